"""What `infer` trusts when a ModelService serves TLS (`spec.tls`): the CA named by `--ca`, else
the `ca.crt` of the ModelService's own TLS Secret (cert-manager writes one) when the Secret can
be read and has it, else the system's trust store.

Through the plugin's port-forward the address is 127.0.0.1, which no serving certificate names:
there the certificate's chain is checked against that CA, and the host name is not, since the
tunnel runs through the API server to exactly the ModelService's Service. With `--url` the
host name is checked as usual."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

from ..kube import KubeError, ModelService, ModelServices

CA_KEY = "ca.crt"


def secret_ca(services: ModelServices, ms: ModelService) -> str | None:
    """The PEM of the TLS Secret's ca.crt; None when the Secret has none or cannot be read."""
    if ms.spec.tls is None:
        return None
    path = f"/api/v1/namespaces/{services.namespace}/secrets/{ms.spec.tls.secret_ref.name}"
    try:
        secret = services.session.request("GET", path)
    except KubeError:  # no get on Secrets: the system's trust store, or --ca
        return None
    value = (secret.get("data") or {}).get(CA_KEY)
    return base64.b64decode(value).decode() if value else None


def verification(
    services: ModelServices, ms: ModelService, ca: Path | None, forwarded: bool
) -> ssl.SSLContext | bool:
    """What the client verifies the server's certificate with (True: httpx's default)."""
    if ca is None and ms.spec.tls is None:
        return True
    pem = ca.read_text() if ca is not None else secret_ca(services, ms)
    context = ssl.create_default_context(cadata=pem) if pem else ssl.create_default_context()
    if forwarded:
        context.check_hostname = False  # the chain still is verified (CERT_REQUIRED)
    return context


def hint(message: str) -> str:
    """A certificate the client could not verify: say how to make it trusted."""
    if "CERTIFICATE_VERIFY_FAILED" in message:
        return (
            f"{message} (the server's certificate is not signed by a CA the plugin trusts: "
            "pass --ca FILE, or put ca.crt in the TLS Secret)"
        )
    return message
