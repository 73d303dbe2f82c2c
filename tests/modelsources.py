"""A ModelService's model source served on loopback, so the runtime fetches it the way a pod
would: http(s) by a local web server (same path, plain http on 127.0.0.1), s3 by a local S3
server (moto; the same bucket and key), pvc:// as a file under the mount root."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from harness import file_server
from podenv import pvc_file

LOOPBACK = "127.0.0.1"


def web_server(root: Path) -> contextlib.AbstractContextManager[str]:
    return file_server(root, LOOPBACK)


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def served(uri: str, model: Path, workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Serve `model` where `uri` says; yields the URI the runtime is to fetch and the extra
    environment it needs (the S3 endpoint and credentials)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        www = workdir / "www"
        target = www / parts.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(model, target)
        with web_server(www) as base:
            yield f"{base}{parts.path}", {}
    elif parts.scheme == "s3":
        import boto3

        with s3_server() as endpoint:
            env = S3_ENV | {"AWS_ENDPOINT_URL": endpoint}
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=env["AWS_DEFAULT_REGION"],
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
            s3.create_bucket(Bucket=parts.netloc)
            s3.upload_file(str(model), parts.netloc, parts.path.lstrip("/"))
            yield uri, env
    elif parts.scheme == "pvc":
        target = pvc_file(uri, workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(model, target)
        yield uri, {}
    else:  # file:// or a path in the image: the file stands in at a local path
        yield str(model), {}
