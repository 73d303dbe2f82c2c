"""The bearer token: read once from its file, checked in constant time on REST headers and gRPC
metadata alike."""

from __future__ import annotations

import hmac
from pathlib import Path

from .errors import Unauthorized


def read_token(path: str) -> bytes | None:
    if not path:
        return None
    token = Path(path).read_text().strip().encode()
    if not token:
        raise ValueError(f"the auth token file {path} is empty")
    return token


def check_bearer(presented: bytes | None, token: bytes) -> None:
    """`Bearer <token>` (the scheme in any case), else Unauthorized."""
    scheme, _, value = (presented or b"").partition(b" ")
    if not (scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), token)):
        raise Unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
