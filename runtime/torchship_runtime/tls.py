"""TLS for both ports from one certificate and key (a `kubernetes.io/tls` Secret mounted as
files), reloaded when the files change so a rotated certificate (cert-manager renews, the
kubelet swaps the Secret's files) is served without a restart.

The files are polled (their size, mtime and inode, which the kubelet's atomic symlink swap
changes); a changed pair is loaded into a fresh SSLContext first, and only a pair that loads
replaces the one being served, so a half-written rotation never breaks the server. Connections
open at the time keep the certificate they started with; new handshakes get the new one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

import grpc

log = logging.getLogger("torchship.runtime")


class Certificates:
    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.stamp = self._stamp()
        self.cert, self.key = self.cert_file.read_bytes(), self.key_file.read_bytes()
        self.context = self._context()  # a bad pair at start-up is a start-up failure
        self.generation = 0  # bumped on every reload

    def _stamp(self) -> tuple:
        stats = [os.stat(p) for p in (self.cert_file, self.key_file)]
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def reload_if_changed(self) -> bool:
        """Load the files again when they changed; True when a new certificate is served."""
        try:
            stamp = self._stamp()
            if stamp == self.stamp:
                return False
            cert, key = self.cert_file.read_bytes(), self.key_file.read_bytes()
            context = self._context()
        except (OSError, ssl.SSLError, ValueError) as error:
            # Mid-rotation (one file new, the other old) or unreadable: keep serving the old
            # pair and look again next time.
            log.warning("TLS certificate not reloaded (still serving the previous one): %s", error)
            return False
        self.stamp, self.cert, self.key, self.context = stamp, cert, key, context
        self.generation += 1
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()

    # -- REST (uvicorn) --------------------------------------------------------------------

    def rest_context(self) -> ssl.SSLContext:
        """The context the HTTPS listener is created with; each handshake switches to the
        current certificate's context (the server-name callback runs for every ClientHello,
        with or without SNI)."""
        outer = self._context()

        def current(connection: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            if connection.context is not self.context:
                connection.context = self.context

        outer.sni_callback = current
        return outer

    # -- gRPC ------------------------------------------------------------------------------

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials that gRPC asks before each handshake whether the certificate changed."""
        served = {"generation": self.generation}

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if served["generation"] == self.generation:
                return None  # unchanged: keep the current one
            served["generation"] = self.generation
            return grpc.ssl_server_certificate_configuration([(self.key, self.cert)])

        initial = grpc.ssl_server_certificate_configuration([(self.key, self.cert)])
        return grpc.dynamic_ssl_server_credentials(initial, fetch)
