# syntax=docker/dockerfile:1
# The two torchship images, from one file:
#
#   docker build --target operator -t ghcr.io/torchship/operator:0.1.0 .
#   docker build --target runtime  -t ghcr.io/torchship/runtime:0.1.0 .            # CPU
#   docker build --target runtime  -t ghcr.io/torchship/runtime:0.1.0-cuda12.6 \
#     --build-arg RUNTIME_BASE=nvidia/cuda:12.6.3-base-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#
# Each image gets a virtual environment of its dependencies, /opt/torchship, built in a builder
# stage on the same base from pyproject.toml alone and copied over without pip: the final images
# carry no pip, setuptools or compiler. The project's own package is copied last, as plain
# source on PYTHONPATH, so a source change rebuilds only that last, small layer.
#
# Without a daemon, and on a base made from Debian's packages: hack/build-images.sh.

# The operator's base, and the builder's for the requirements.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The runtime's base: the Python image for CPU, or a CUDA image with Python >= 3.11 available
# from its package manager (Ubuntu 24.04 based: nvidia/cuda:12.x-*-ubuntu24.04).
ARG RUNTIME_BASE=python:3.11-slim-bookworm

# -- requirements: the dependency lists of each image, read from pyproject.toml --------------
FROM ${PYTHON_IMAGE} AS requirements
# Prints one requirement a line: the base dependencies plus those of the extras named as
# arguments.
ARG REQUIREMENTS='import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(*p["dependencies"], *(r for e in sys.argv[1:] for r in p["optional-dependencies"][e]), sep="\n")'
WORKDIR /requirements
COPY pyproject.toml ./
RUN python -c "$REQUIREMENTS" operator > operator.txt \
 && python -c "$REQUIREMENTS" runtime s3 > runtime.txt

# -- operator ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS operator-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/torchship
COPY --from=requirements /requirements/operator.txt /tmp/requirements.txt
RUN /opt/torchship/bin/pip install -r /tmp/requirements.txt \
 && /opt/torchship/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE} AS operator
LABEL org.opencontainers.image.title="torchship operator" \
      org.opencontainers.image.source="https://github.com/torchship/torchship" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base's own installers go too (where it has any): nothing in the image installs packages.
RUN if python -m pip --version >/dev/null 2>&1; then \
      python -m pip uninstall --yes --no-cache-dir pip setuptools wheel; \
    fi
COPY --from=operator-build /opt/torchship /opt/torchship
COPY operator/torchship_operator /opt/torchship/app/torchship_operator
ENV PATH=/opt/torchship/bin:$PATH \
    PYTHONPATH=/opt/torchship/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# The chart's runAsUser; any other non-root uid works as well.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "torchship_operator"]

# -- runtime -------------------------------------------------------------------------------------
FROM ${RUNTIME_BASE} AS runtime-build
# torch's own index: CPU wheels by default (no CUDA libraries), or e.g. .../whl/cu126; empty:
# pip's configured index, like every other requirement.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A CUDA base has no Python: take the distribution's (the Python image's is used as it is).
RUN if ! command -v python3 >/dev/null; then \
      apt-get update \
      && apt-get install --yes --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/torchship
COPY --from=requirements /requirements/runtime.txt /tmp/requirements.txt
# torch first, from its index; then the rest (torch already satisfied) from the registry.
RUN /opt/torchship/bin/pip install ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"} "$(grep -E '^torch([<>=!~ ]|$)' /tmp/requirements.txt)" \
 && /opt/torchship/bin/pip install -r /tmp/requirements.txt \
 && /opt/torchship/bin/pip uninstall --yes pip

FROM ${RUNTIME_BASE} AS runtime
LABEL org.opencontainers.image.title="torchship runtime" \
      org.opencontainers.image.source="https://github.com/torchship/torchship" \
      org.opencontainers.image.licenses="Apache-2.0"
# The interpreter the virtual environment points at, and nothing to install packages with.
RUN if ! command -v python3 >/dev/null; then \
      apt-get update \
      && apt-get install --yes --no-install-recommends python3 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && if python3 -m pip --version >/dev/null 2>&1; then \
      python3 -m pip uninstall --yes --no-cache-dir pip setuptools wheel; \
    fi \
 && mkdir -p /var/cache/torchship \
 && chown 1000:1000 /var/cache/torchship
COPY --from=runtime-build /opt/torchship /opt/torchship
# The one module of the base distribution the runtime uses: the protocol's datatype table.
COPY sdk/torchship/__init__.py sdk/torchship/datatypes.py /opt/torchship/app/torchship/
COPY runtime/torchship_runtime /opt/torchship/app/torchship_runtime
# The runtime writes only to its model cache and /tmp (both volumes under Kubernetes).
ENV PATH=/opt/torchship/bin:$PATH \
    PYTHONPATH=/opt/torchship/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/var/cache/torchship \
    TORCH_HOME=/var/cache/torchship/torch \
    TORCHSHIP_MODEL_CACHE_DIR=/var/cache/torchship
# The uid the operator gives runtime pods (runAsUser); any other non-root uid works as well.
USER 1000:1000
# REST (OIP v2 and v1) and gRPC (OIP v2).
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "torchship_runtime"]
