"""Model sources: a URI in, a local path out.

Local paths, `file://` and `pvc://` (a claim the operator mounts under the PVC root) are read in
place. `http(s)://` and `s3://` download once into the cache directory: with the cache on a
volume, the next start of the pod is a local read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("torchship.runtime")


def cache_path(cache_dir: str, uri: str) -> Path:
    """Where `uri` is cached: a digest of the whole URI keeps versions apart, the file name
    keeps the suffix (.pt2, .safetensors) that tells how to read it."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    name = urllib.parse.urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1] or "model"
    return Path(cache_dir) / f"{digest}-{name}"


def fetch(uri: str, *, cache_dir: str, pvc_root: str) -> Path:
    """The local file (or directory) holding the model at `uri`."""
    if uri.startswith("file://"):
        path = Path(urllib.parse.unquote(uri.removeprefix("file://")))
    elif uri.startswith("pvc://"):
        claim_path = uri.removeprefix("pvc://").lstrip("/")
        if not claim_path or ".." in Path(claim_path).parts:
            raise ValueError(f"model URI {uri!r}: expected pvc://claim/path/in/claim")
        path = Path(pvc_root) / claim_path
    elif uri.startswith("/"):
        path = Path(uri)
    elif uri.startswith(("http://", "https://", "s3://")):
        path = cache_path(cache_dir, uri)
        if path.exists():
            log.info("model found in the cache: %s", path)
            return path
        download(uri, path)
    else:
        raise ValueError(
            f"unsupported model URI {uri!r}: use a path, file://, pvc://, http(s):// or s3://"
        )
    if not path.exists():
        raise FileNotFoundError(f"no model at {path} (from {uri})")
    return path


def download(uri: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as out:
            if uri.startswith("s3://"):
                download_s3(uri, out)
            else:
                with urllib.request.urlopen(uri, timeout=60) as response:
                    shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(partial, target)  # a half-written file never looks like a model
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    log.info("downloaded %s to %s (%d bytes)", uri, target, target.stat().st_size)


def download_s3(uri: str, out: BinaryIO) -> None:
    try:
        import boto3  # only images that serve from S3 carry it (the `s3` extra)
    except ImportError:
        raise RuntimeError("s3:// model URIs need boto3 (pip install 'torchship[s3]')") from None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"model URI {uri!r}: expected s3://bucket/key")
    # Credentials, region and AWS_ENDPOINT_URL come from the standard AWS environment.
    boto3.client("s3").download_fileobj(bucket, key, out)
