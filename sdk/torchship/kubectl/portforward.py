"""`kubectl port-forward` to a ModelService's Service on a free loopback port, for as long as a
`with` block runs. kubectl picks a ready pod behind the Service and tunnels through the API
server, so this works from any machine that can reach the cluster."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


class PortForwardError(RuntimeError):
    """kubectl could not forward; the message is kubectl's own."""


def command(
    service: str, port: int, namespace: str, context: str | None, kubeconfig: str | None
) -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise PortForwardError("kubectl is not on PATH (needed to port-forward; or pass --url)")
    args = [kubectl, "port-forward", "--namespace", namespace, "--address", "127.0.0.1"]
    if context:
        args += ["--context", context]
    if kubeconfig:
        args += ["--kubeconfig", kubeconfig]
    return [*args, f"service/{service}", f":{port}"]


@contextmanager
def forwarded(
    service: str,
    port: int,
    namespace: str,
    context: str | None = None,
    kubeconfig: str | None = None,
    timeout: float = 30,
    scheme: str = "http",
) -> Iterator[str]:
    """Yields `<scheme>://127.0.0.1:<local port>` once kubectl says it is forwarding."""
    process = subprocess.Popen(
        command(service, port, namespace, context, kubeconfig),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        found: list[str] = []
        ready = threading.Event()

        def watch() -> None:
            for line in process.stdout or ():
                if match := FORWARDING.search(line):
                    found.append(match.group(1))
                    ready.set()
            ready.set()  # kubectl ended

        threading.Thread(target=watch, daemon=True).start()
        if not ready.wait(timeout) or not found:
            process.terminate()
            _, err = process.communicate(timeout=10)
            why = (err or "").strip() or f"no forwarding within {timeout:g}s"
            raise PortForwardError(f"kubectl port-forward service/{service}: {why}")
        yield f"{scheme}://127.0.0.1:{found[0]}"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
