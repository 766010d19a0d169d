"""The admission webhooks' HTTPS server: routes, AdmissionReview bodies, TLS, lifecycle.

Wiring only: each route of ``registration.KINDS`` hands the parsed review to ``Admission``
and writes its verdict back. A body that is not an AdmissionReview v1 request gets HTTP 400
with the reason as text (the API server reports it as a failed call); anything unexpected
in a rule is logged and denied with 500 InternalError, so a bug never crashes the server or
allows a write unchecked. ``GET /webhook-health-check`` (upstream's readiness probe of the
webhook) and ``GET /healthz`` answer 200 once serving.

Every replica serves the webhooks, leader or not: the rules only read. Start it with
``WebhookServer.from_settings(webhook_listen, webhook_cert_file, webhook_key_file, reader,
settings)`` and ``await server.start()``; ``await server.stop()`` stops accepting, lets
requests in flight finish and ends the certificate reloader.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from spiderpool_controller.domain.validation import ValidationSettings
from spiderpool_controller.webhook import registration
from spiderpool_controller.webhook.admission import Admission, NadOwnerLookup, ObjectReader
from spiderpool_controller.webhook.review import (
    AdmissionRequest,
    MalformedReview,
    Verdict,
    parse_review,
    review_response,
)
from spiderpool_controller.webhook.tls import DEFAULT_RELOAD_INTERVAL_S, CertificateReloader

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024  # object and oldObject (each up to the API server's 1.5 MiB), escaped
Decide = Callable[[str, AdmissionRequest], Awaitable[Verdict]]


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::]:5722`` for IPv6) as a host and a port; ``ValueError`` otherwise."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"webhook listen address {listen!r} is not HOST:PORT (e.g. 0.0.0.0:5722)")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port_text)


class WebhookServer:
    """The HTTPS server of the admission webhooks; see the module docstring."""

    def __init__(
        self,
        admission: Admission,
        certificates: CertificateReloader,
        host: str = "0.0.0.0",
        port: int = registration.DEFAULT_PORT,
        *,
        reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
        shutdown_timeout_s: float = 5.0,
    ) -> None:
        self.admission = admission
        self.certificates = certificates
        self._host = host
        self._port = port
        self._reload_interval = reload_interval_s
        self._shutdown_timeout = shutdown_timeout_s
        self._runner: web.AppRunner | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._bound_port: int | None = None

    @classmethod
    def from_settings(
        cls,
        webhook_listen: str,
        webhook_cert_file: str,
        webhook_key_file: str,
        reader: ObjectReader,
        settings: ValidationSettings | None = None,
        *,
        nad_owners: NadOwnerLookup | None = None,
        reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
    ) -> WebhookServer:
        """The server the controller's wiring starts on every replica.

        ``reader`` is the controller's Store (only ``get``/``list`` are used); ``settings``
        carries the families and switches of the installation (``spiderpool-conf``);
        ``nad_owners`` (in a cluster ``nad_owners.KubeNadOwners(KubeRest(api_client))``) lets
        the SpiderMultusConfig webhook refuse taking over another config's
        NetworkAttachmentDefinition.
        """
        host, port = parse_listen(webhook_listen)
        return cls(
            Admission(reader, settings, nad_owners=nad_owners),
            CertificateReloader(webhook_cert_file, webhook_key_file),
            host,
            port,
            reload_interval_s=reload_interval_s,
        )

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one picked for port 0)."""
        if self._bound_port is None:
            raise RuntimeError("the webhook server is not started")
        return self._bound_port

    @property
    def url(self) -> str:
        host = self._host if self._host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.port}"

    def app(self) -> web.Application:
        """The aiohttp application (routes only; TLS is the site's)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        for entry in registration.KINDS:
            app.router.add_post(entry.mutate_path, self._handler(entry.kind, self.admission.mutate))
            app.router.add_post(entry.validate_path, self._handler(entry.kind, self.admission.validate))
        app.router.add_get(registration.HEALTH_CHECK_PATH, _ok)
        app.router.add_get(registration.HEALTHZ_PATH, _ok)
        return app

    def _handler(self, kind: str, decide: Decide) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                review = parse_review(await request.read())
            except MalformedReview as exc:
                log.warning("admission_review_malformed", path=request.path, error=str(exc))
                return web.Response(status=400, text=f"malformed AdmissionReview: {exc}\n")
            try:
                verdict = await decide(kind, review)
            except Exception as exc:
                log.exception("admission_review_crashed", path=request.path, uid=review.uid)
                verdict = Verdict.deny(
                    500,
                    "InternalError",
                    f"internal error in the spiderpool webhook: {type(exc).__name__}: {exc}",
                )
            return web.json_response(review_response(review.uid, verdict))

        return handle

    async def start(self) -> None:
        """Load the certificate (``CertificateError`` when it cannot), bind and serve."""
        ssl_context = self.certificates.load()
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # aiohttp exposes no public accessor for the bound socket
        sockets = getattr(server, "sockets", None) or ()
        self._bound_port = int(sockets[0].getsockname()[1]) if sockets else self._port
        self._reloader = asyncio.create_task(self.certificates.run(self._reload_interval))
        log.info("webhook_serving", host=self._host, port=self._bound_port)

    async def stop(self) -> None:
        """Stop accepting, finish requests in flight, stop watching the certificate."""
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
            self._reloader = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("webhook_stopped")


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")
