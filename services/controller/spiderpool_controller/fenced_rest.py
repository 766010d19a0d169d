"""The leader's plain JSON client of the API server: its writes pass the same write fence as the Store's.

Owns that the writes the leader's reconcilers make outside the spiderpool Store (the Multus
reconciler's NetworkAttachmentDefinitions, the Kubernetes Events any reconciler records) are
fenced like IPAM state: every request but a GET goes through ``store.fenced.WriteFence`` (the
gate checked before the request is handed to the client and again as it leaves the HTTP
client), so a standby or a leader whose Lease lapsed (a renewal late, or a SIGSTOP past the
renew deadline) sends nothing. Reads and watches pass through. A fenced write fails with
``KubeError`` (code 0: nothing was sent, reason ``NOT_LEADER``), the error every caller of
``KubeRest`` already handles. The Lease itself is written through a plain ``KubeRest``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spiderpool_common.kube.rest import KubeError, KubeRest

from spiderpool_controller.store.fenced import NotLeader, WriteFence


class FencedRest(KubeRest):
    def __init__(self, api_client: Any, may_write: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
        super().__init__(api_client, timeout_s=timeout_s)
        self.fence = WriteFence(may_write)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        send = super()._request
        if method == "GET":
            return await send(method, path, params=params, body=body, content_type=content_type)
        try:
            return await self.fence.write(
                f"{method} {path}",
                lambda: send(method, path, params=params, body=body, content_type=content_type),
            )
        except NotLeader as exc:
            raise KubeError(0, NotLeader.reason, exc.message) from exc
