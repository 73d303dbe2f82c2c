"""torchship's torch inference runtime: Open Inference Protocol v2 over REST."""

__version__ = "0.1.0"
