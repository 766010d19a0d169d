"""``spiderpool-health``, the chart's exec probe: the gRPC health service over a unix socket or mutual TLS.

Each case runs the installed command against a real grpc.aio server with the standard health service: the
agent's shape (a unix socket) and the controller's (TCP with mutual TLS, the client presenting a certificate
of the cluster CA). The probe must stay cheap, so it is also checked to import no grpcio.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from spiderpool_common.tls import ReloadingServerCredentials, TlsFiles

from tests.kubeapi.certs import CertificateAuthority

PROBE = str(Path(sys.executable).parent / "spiderpool-health")
NAME = "spiderpool-controller.kube-system.svc"


def issue(ca: CertificateAuthority, directory: Path, names: tuple[str, ...] = (NAME,)) -> TlsFiles:
    pair = ca.issue(names, ("127.0.0.1",), client=True)
    cert, key = pair.write(directory, "tls")
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    return TlsFiles(str(cert), str(key), str(directory / "ca.crt"))


async def probe(*args: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(PROBE, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess([PROBE, *args], proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def unix_server(tmp_path: Path) -> AsyncIterator[tuple[str, health.aio.HealthServicer]]:
    path = str(tmp_path / "agent.sock")
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        yield path, servicer
    finally:
        await server.stop(0)


async def test_the_agent_probe_follows_the_health_service_on_the_socket(
    unix_server: tuple[str, health.aio.HealthServicer], tmp_path: Path
) -> None:
    """SERVING exits 0; NOT_SERVING and a missing socket exit 1 saying why."""
    path, servicer = unix_server
    ok = await probe("--socket", path)
    assert (ok.returncode, ok.stderr) == (0, "")
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    down = await probe("--socket", path)
    assert down.returncode == 1 and "NOT_SERVING" in down.stderr
    gone = await probe("--socket", str(tmp_path / "none.sock"))
    assert gone.returncode == 1 and "none.sock" in gone.stderr


async def test_the_controller_probe_speaks_mutual_tls(tmp_path: Path) -> None:
    """With a certificate of the cluster CA the probe is served; another CA's or a wrong server name fails."""
    ca = CertificateAuthority("spiderpool-ca")
    server_files = issue(ca, tmp_path / "server")
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", ReloadingServerCredentials(server_files).credentials())
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        client = issue(ca, tmp_path / "client", ("spiderpool-agent",))
        tls = ["--tls-cert-file", client.cert, "--tls-key-file", client.key, "--tls-ca-file", client.ca]
        ok = await probe("--address", f"127.0.0.1:{port}", *tls, "--tls-server-name", NAME)
        assert (ok.returncode, ok.stderr) == (0, "")
        stranger = issue(CertificateAuthority("someone-else"), tmp_path / "stranger")
        foreign = [
            "--tls-cert-file",
            stranger.cert,
            "--tls-key-file",
            stranger.key,
            "--tls-ca-file",
            client.ca,
        ]
        refused = await probe("--address", f"127.0.0.1:{port}", *foreign, "--tls-server-name", NAME)
        assert refused.returncode == 1 and f"127.0.0.1:{port}" in refused.stderr
        wrong = await probe("--address", f"127.0.0.1:{port}", *tls, "--tls-server-name", "elsewhere.svc")
        assert wrong.returncode == 1 and "certificate" in wrong.stderr.lower()
    finally:
        await server.stop(0)


def test_an_address_without_client_certificate_files_is_a_usage_error() -> None:
    """--address without the three TLS files exits 2 naming them."""
    proc = subprocess.run([PROBE, "--address", "127.0.0.1:1"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "--tls-cert-file" in proc.stderr


def test_the_probe_imports_neither_grpc_nor_structlog(tmp_path: Path) -> None:
    """Run every few seconds on every node, the probe loads only light modules."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "spiderpool_common.health_probe", "--socket",
         str(tmp_path / "none.sock")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line
    }
    assert "spiderpool_cni" in imported
    assert not imported & {"grpc", "structlog", "google", "kubernetes_asyncio", "yaml"}
