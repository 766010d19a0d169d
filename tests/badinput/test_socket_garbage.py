"""Garbage on the services' sockets: whoever speaks nonsense, everyone else is still served.

The agent's and the controller's unix sockets (gRPC over HTTP/2) and the webhook's HTTPS
port each get connections that send random bytes, a plain HTTP/1.1 request, half of the
HTTP/2 client preface, or nothing at all, and keep them open. While they are open a real
CNI ADD through the installed shim (shim -> agent -> controller) succeeds and its DEL
too, and the webhook answers a valid review; afterwards the services still answer their
health checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from spiderpool_controller.domain import models
from spiderpool_controller.store.sqlite import SqliteStore
from spiderpool_controller.webhook import WebhookServer

from tests.badinput.test_webhook_malformed import BASES, POOL_MUTATE
from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import Stack, running_stack
from tests.kubeapi.certs import CertificateAuthority

POOL = "garbage-v4"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GARBAGE: dict[str, bytes] = {
    "random bytes": os.urandom(4096),
    "HTTP/1.1 request": b"GET /spiderpool.agent.v1.CniService/IpamAdd HTTP/1.1\r\nHost: x\r\n\r\n",
    "half an HTTP/2 preface": PREFACE[:11],
    "a preface then random frames": PREFACE + os.urandom(512),
    "nothing": b"",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    pools = [pool_manifest(POOL, "10.60.0.0/16", ["10.60.0.10-10.60.0.250"])]
    with running_stack("spsg-", pools) as result:
        yield result


def open_bad_connections(path: Path, copies: int = 3) -> list[socket.socket]:
    """Connections to the unix socket at ``path``, each having sent one kind of garbage and left open."""
    conns = []
    for payload in GARBAGE.values():
        for _ in range(copies):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(path))
            if payload:
                with contextlib.suppress(OSError):  # the server may already have hung up
                    conn.sendall(payload)
            conns.append(conn)
    return conns


def test_garbage_on_the_agent_and_controller_sockets_leaves_others_served(stack: Stack) -> None:
    """With 15 garbage connections open on each socket, an ADD through the shim and its DEL succeed,
    and both services stay healthy after the garbage is gone."""
    conns = open_bad_connections(stack.agent.socket_path) + open_bad_connections(stack.controller.socket_path)
    try:
        result = stack.add("1.0.0", "while-garbage", v4=(POOL,), v6=())
        assert result["ips"][0]["address"].startswith("10.60.0.")
        assert stack.ips_of("while-garbage", POOL)
        stack.run("DEL", stack.net_conf("1.0.0", v4=(POOL,), v6=()), "while-garbage").succeeded_silently()
        assert not stack.ips_of("while-garbage", POOL)
        # the HTTP/1.1 request got an answer or a hang-up, never a hang of the server
        for conn in conns:
            conn.settimeout(0)
            with contextlib.suppress(BlockingIOError, OSError):
                conn.recv(4096)
    finally:
        for conn in conns:
            conn.close()
    result = stack.add("1.0.0", "after-garbage", v4=(POOL,), v6=())
    assert result["ips"]
    stack.run("DEL", stack.net_conf("1.0.0", v4=(POOL,), v6=()), "after-garbage").succeeded_silently()


async def test_garbage_on_the_webhook_port_leaves_reviews_answered(tmp_path: Path) -> None:
    """Raw garbage, plain HTTP/1.1 on the TLS port, a TLS client that never sends a request and a
    connection that never speaks, all held open: a valid review over TLS is still answered."""
    ca = CertificateAuthority("garbage-ca")
    cert, key = ca.issue(("webhook.svc",), ("127.0.0.1",)).write(tmp_path / "tls", "tls")
    store = SqliteStore(tmp_path / "state.db")
    server = WebhookServer.from_settings("127.0.0.1:0", str(cert), str(key), store, reload_interval_s=3600)
    await server.start()
    writers: list[asyncio.StreamWriter] = []
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    try:
        for payload in (*GARBAGE.values(), b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n"):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(payload)
            await writer.drain()
            writers.append(writer)
        _, tls_writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
        tls_writer.write(
            b"POST " + POOL_MUTATE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        await tls_writer.drain()  # a request that never finishes its body
        writers.append(tls_writer)
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "after-garbage",
                "operation": "CREATE",
                "kind": {"group": models.API_GROUP, "version": "v2beta1", "kind": models.KIND_IPPOOL},
                "object": copy.deepcopy(BASES[models.KIND_IPPOOL]),
            },
        }
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
            async with asyncio.timeout(20):
                async with client.post(server.url + POOL_MUTATE, json=review) as resp:
                    answer = (await resp.json())["response"]
                async with client.get(server.url + "/healthz") as health:
                    assert health.status == 200
        assert resp.status == 200 and answer["uid"] == "after-garbage" and answer["allowed"] is True
    finally:
        for writer in writers:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await server.stop()
        await store.close()
