"""The controllers' Service stand-in: connections spread over the backends, a dead backend is skipped."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.simcluster.service_proxy import ServiceProxy


async def backend(path: Path, name: bytes) -> asyncio.Server:
    """A server answering every connection with its name, then echoing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(name)
        await writer.drain()
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, str(path))


async def ask(path: Path, payload: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    out = await reader.readexactly(1)
    if payload:
        writer.write(payload)
        await writer.drain()
        out += await reader.readexactly(len(payload))
    writer.close()
    return out


async def test_connections_go_round_robin_and_skip_a_backend_that_refuses(tmp_path: Path) -> None:
    """Each new connection picks the next backend; one that refuses is skipped; bytes pass both ways."""
    a = await backend(tmp_path / "a.sock", b"A")
    b = await backend(tmp_path / "b.sock", b"B")
    proxy = ServiceProxy([f"unix:{tmp_path / 'a.sock'}", f"unix:{tmp_path / 'b.sock'}"])
    task = asyncio.create_task(proxy.serve([f"unix:{tmp_path / 'svc.sock'}"], tmp_path / "ready"))
    try:
        while not (tmp_path / "ready").exists():
            await asyncio.sleep(0.01)
        assert [await ask(tmp_path / "svc.sock") for _ in range(4)] == [b"A", b"B", b"A", b"B"]
        assert await ask(tmp_path / "svc.sock", b"hello") == b"Ahello"
        a.close()
        await a.wait_closed()
        assert [await ask(tmp_path / "svc.sock") for _ in range(3)] == [b"B", b"B", b"B"]
        b.close()
        await b.wait_closed()
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "svc.sock"))
        assert await reader.read() == b""  # no backend: the connection is closed
        writer.close()
    finally:
        task.cancel()
