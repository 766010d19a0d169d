"""Mutual TLS for the controller's gRPC port in a cluster, with certificates reloaded from files.

Owns how the controller, the agents and ``spiderpoolctl`` authenticate each other over TCP:
each side presents a certificate issued by the cluster's spiderpool CA and accepts only
peers with one (the server requires a client certificate). The files are what a Kubernetes
Secret mounts (``tls.crt``, ``tls.key``, ``ca.crt``); when they change (cert-manager or the
chart rotates them), new handshakes use the new ones without a restart: the server reads
them through grpc's certificate-configuration fetcher, which grpc calls on new connections,
and re-reads only when a file's modification time or size changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class TlsFiles:
    cert: str  # PEM certificate chain of this side
    key: str  # PEM private key
    ca: str  # PEM CA bundle the peer's certificate must chain to

    def validate(self) -> TlsFiles:
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if not path:
                raise ValueError(f"mutual TLS needs a {what} file")
            if not Path(path).is_file():
                raise ValueError(f"TLS {what} file {path} does not exist or is not a file")
        return self

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """Modification time and size of the three files: what a rotation changes."""
        out = []
        for path in (self.cert, self.key, self.ca):
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def read(self) -> tuple[bytes, bytes, bytes]:
        return Path(self.cert).read_bytes(), Path(self.key).read_bytes(), Path(self.ca).read_bytes()


class ReloadingServerCredentials:
    """Server credentials that require a client certificate and follow file rotations."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files.validate()
        self._stamp = files.stamp()
        self.reloads = 0

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = self.files.read()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc on a new handshake: a new configuration only when the files changed."""
        try:
            stamp = self.files.stamp()
        except OSError:
            return None  # mid-rotation: keep serving with what we have
        if stamp == self._stamp:
            return None
        try:
            configuration = self._configuration()
        except OSError:
            return None
        self._stamp = stamp
        self.reloads += 1
        return configuration

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=True
        )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Client credentials presenting this side's certificate and trusting the cluster CA,
    read when the channel is made."""
    cert, key, ca = files.validate().read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
