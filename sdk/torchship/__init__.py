"""torchship for its users: the inference client (`torchship.client`), the ModelService client
(`torchship.kube`) and the kubectl plugin (`torchship.kubectl`). None of them needs torch."""

__version__ = "0.1.0"
