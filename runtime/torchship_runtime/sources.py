"""Model sources: a URI in, a local path out (downloads land in the cache directory, so a
cache on a PVC turns the next cold start into a local read)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

log = logging.getLogger("torchship.runtime")


def cache_path(cache_dir: str, uri: str) -> Path:
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    name = uri.rstrip("/").rsplit("/", 1)[-1] or "model"
    return Path(cache_dir) / f"{digest}-{name}"


def fetch(uri: str, *, cache_dir: str, pvc_root: str) -> Path:
    """The local file (or directory) for `uri`."""
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
    elif uri.startswith("pvc://"):
        path = Path(pvc_root) / uri.removeprefix("pvc://")
    elif uri.startswith("/"):
        path = Path(uri)
    elif uri.startswith(("http://", "https://", "s3://")):
        path = cache_path(cache_dir, uri)
        if path.exists():
            log.info("model found in cache: %s", path)
            return path
        download(uri, path)
    else:
        raise ValueError(f"unsupported model URI {uri!r}: use file://, pvc://, http(s)://, s3://")
    if not path.exists():
        raise FileNotFoundError(f"model not found at {path} (from {uri})")
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


def download_s3(uri: str, out) -> None:
    import boto3  # optional: only images that serve from S3 need it

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    # AWS_ENDPOINT_URL, credentials and region come from the standard AWS environment.
    boto3.client("s3").download_fileobj(bucket, key, out)
