"""The webhook server's certificate, from files, reloaded when they change.

Owns the TLS server context. In a cluster the certificate and key are a Secret mounted as
files (Helm's ``tls.method`` auto/provided/certmanager, upstream's
charts/spiderpool/templates/tls.yaml); cert-manager renews it
and the kubelet swaps the files in place, so the server must pick the new pair up without a
restart. A listening socket keeps the ``SSLContext`` it was created with, so the listener's
context only dispatches: its ``sni_callback`` (which OpenSSL calls for every ClientHello,
with or without a server name) moves each new connection to the context of the newest
pair. Connections already established keep theirs.

``check()`` compares the files' contents with the loaded ones and builds a new context when
they differ; a pair that does not load (a half-written Secret, a key that does not match the
certificate) is logged and the previous context stays, until the files change again.
``run()`` calls it every ``interval_s`` seconds.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)
DEFAULT_RELOAD_INTERVAL_S = 10.0


class CertificateError(ValueError):
    """The certificate or key files cannot be read or do not form a usable pair."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc.strerror or exc}") from None


def build_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the pair; ``CertificateError`` names the files on failure."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])  # aiohttp serves HTTP/1.1; the API server's client then uses it
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(
            f"cannot load the webhook certificate {cert_file} with key {key_file}: {exc}"
        ) from None
    return ctx


class CertificateReloader:
    """The server context for ``cert_file``/``key_file``; see the module docstring."""

    def __init__(self, cert_file: str | Path, key_file: str | Path) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._loaded: tuple[bytes, bytes] | None = None
        self._failed: tuple[bytes, bytes] | None = None
        self._current: ssl.SSLContext | None = None
        self._listener: ssl.SSLContext | None = None
        self.reloads = 0  # contexts built after the first, for tests and logs

    def load(self) -> ssl.SSLContext:
        """Load the pair (raising ``CertificateError``) and return the listener's context."""
        contents = (_read(self.cert_file), _read(self.key_file))
        self._current = build_context(self.cert_file, self.key_file)
        self._loaded = contents
        listener = self._current
        listener.sni_callback = self._select
        self._listener = listener
        return listener

    @property
    def current(self) -> ssl.SSLContext:
        """The context new connections get."""
        if self._current is None:
            raise RuntimeError("CertificateReloader.load() was not called")
        return self._current

    def _select(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        current = self._current
        if current is not None and current is not ctx:
            conn.context = current

    def check(self) -> bool:
        """Reload when the files changed; return whether new connections now get a new context."""
        try:
            contents = (_read(self.cert_file), _read(self.key_file))
        except CertificateError as exc:
            log.warning("webhook_certificate_unreadable", error=str(exc))
            return False
        if contents in (self._loaded, self._failed):
            return False
        try:
            fresh = build_context(self.cert_file, self.key_file)
        except CertificateError as exc:
            self._failed = contents
            log.error("webhook_certificate_reload_failed", error=str(exc))  # noqa: TRY400 (no traceback: the message says it)
            return False
        # the files may have changed between reading and loading: compare again next time
        self._loaded, self._failed, self._current = contents, None, fresh
        self.reloads += 1
        log.info("webhook_certificate_reloaded", cert_file=str(self.cert_file), reloads=self.reloads)
        return True

    async def run(self, interval_s: float = DEFAULT_RELOAD_INTERVAL_S) -> None:
        """Check the files every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.check()
