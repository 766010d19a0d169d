"""Mutual TLS on a real grpc.aio server: only peers with a certificate of the cluster CA get in,
and rotated certificate files are used by new handshakes without a restart."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from spiderpool.agent.v1 import cni_pb2, cni_pb2_grpc
from spiderpool_common.tls import ReloadingServerCredentials, TlsFiles, channel_credentials

from tests.component.agent_harness import DEADLINE, ServiceProcess, cni_call, net_conf
from tests.component.conformance_stack import start_service
from tests.kubeapi.certs import CertificateAuthority

NAME = "spiderpool-controller.kube-system.svc"


def issue(ca: CertificateAuthority, directory: Path, stem: str, **kw: object) -> TlsFiles:
    pair = ca.issue((NAME,), ("127.0.0.1",), client=True, **kw)  # type: ignore[arg-type]
    cert, key = pair.write(directory, stem)
    ca_file = directory / f"{stem}-ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    return TlsFiles(str(cert), str(key), str(ca_file))


@pytest.fixture
async def served(
    tmp_path: Path,
) -> AsyncIterator[tuple[int, TlsFiles, CertificateAuthority, ReloadingServerCredentials]]:
    ca = CertificateAuthority("spiderpool-ca")
    files = issue(ca, tmp_path / "server", "tls")
    creds = ReloadingServerCredentials(files)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", creds.credentials())
    await server.start()
    try:
        yield port, files, ca, creds
    finally:
        await server.stop(0)


async def check(port: int, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    options = [("grpc.ssl_target_name_override", NAME)]
    channel = (
        grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options)
        if credentials is not None
        else grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    )
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def test_only_clients_with_a_certificate_of_the_cluster_ca_are_served(
    served: tuple[int, TlsFiles, CertificateAuthority, ReloadingServerCredentials], tmp_path: Path
) -> None:
    """A client certificate of the CA is served; no certificate, another CA's, an expired one, or
    plain TCP are refused."""
    port, _, ca, _ = served
    good = issue(ca, tmp_path / "agent", "agent")
    assert await check(port, channel_credentials(good)) == grpc.StatusCode.OK
    no_cert = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)
    assert await check(port, no_cert) == grpc.StatusCode.UNAVAILABLE
    stranger = CertificateAuthority("someone-else")
    other = issue(stranger, tmp_path / "stranger", "stranger")
    trusting_ours = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem,
        private_key=Path(other.key).read_bytes(),
        certificate_chain=Path(other.cert).read_bytes(),
    )
    assert await check(port, trusting_ours) == grpc.StatusCode.UNAVAILABLE
    expired = issue(ca, tmp_path / "old", "old", valid_from_days=-30, valid_days=10)
    assert await check(port, channel_credentials(expired)) == grpc.StatusCode.UNAVAILABLE
    assert await check(port, None) == grpc.StatusCode.UNAVAILABLE


async def test_rotated_files_are_used_by_new_handshakes_without_a_restart(
    served: tuple[int, TlsFiles, CertificateAuthority, ReloadingServerCredentials], tmp_path: Path
) -> None:
    """The chart rotates the Secret to a new CA: clients of the new CA get in, the old CA's no longer."""
    port, files, old_ca, creds = served
    old_client = issue(old_ca, tmp_path / "old-agent", "agent")
    assert await check(port, channel_credentials(old_client)) == grpc.StatusCode.OK
    new_ca = CertificateAuthority("spiderpool-ca-2")
    fresh = issue(new_ca, tmp_path / "new-server", "tls")
    await asyncio.sleep(0.01)  # a different modification time
    for src, dst in ((fresh.cert, files.cert), (fresh.key, files.key), (fresh.ca, files.ca)):
        shutil.copyfile(src, dst)
    new_client = issue(new_ca, tmp_path / "new-agent", "agent")
    assert await check(port, channel_credentials(new_client)) == grpc.StatusCode.OK
    assert creds.reloads == 1
    assert await check(port, channel_credentials(old_client)) == grpc.StatusCode.UNAVAILABLE


def test_missing_files_are_refused_with_a_message(tmp_path: Path) -> None:
    """Each of the three files must exist; the message names the missing one."""
    (tmp_path / "tls.crt").write_text("x")
    with pytest.raises(ValueError, match="TLS key file"):
        TlsFiles(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), str(tmp_path / "ca.crt")).validate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_controller_serves_tcp_with_mutual_tls_to_agents_and_spiderpoolctl(tmp_path: Path) -> None:
    """A controller on TCP with mutual TLS: spiderpoolctl and an agent with certificates of the CA
    are served (an ADD through the installed shim works), spiderpoolctl without one is refused."""
    ca = CertificateAuthority("spiderpool-ca")
    server = issue(ca, tmp_path / "server", "tls")
    client = issue(ca, tmp_path / "client", "client")
    port = free_port()
    tls_args = ["--tls-cert-file", server.cert, "--tls-key-file", server.key, "--tls-ca-file", server.ca]
    controller = ServiceProcess(
        [sys.executable, "-m", "spiderpool_controller.main", "--store", f"sqlite:///{tmp_path / 'db'}",
         "--listen", f"127.0.0.1:{port}", "--log-format", "console", *tls_args],
        tmp_path / "unused.sock", tmp_path / "controller.log",
    )  # fmt: skip
    agent_sock = tmp_path / "agent.sock"
    agent = ServiceProcess(
        [sys.executable, "-m", "spiderpool_agent.main", "--controller", f"127.0.0.1:{port}",
         "--socket", str(agent_sock), "--state-dir", str(tmp_path / "agent"), "--node", "n1",
         "--controller-tls-cert-file", client.cert, "--controller-tls-key-file", client.key,
         "--controller-tls-ca-file", client.ca, "--controller-tls-server-name", NAME,
         "--log-format", "console"],
        agent_sock, tmp_path / "agent.log",
    )  # fmt: skip
    ctl = [sys.executable, "-m", "spiderpool_tools.ctl", "--controller", f"127.0.0.1:{port}"]
    mine = [
        "--tls-cert",
        client.cert,
        "--tls-key",
        client.key,
        "--tls-ca",
        client.ca,
        "--tls-server-name",
        NAME,
    ]
    try:
        controller.proc = subprocess.Popen(
            controller.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        pool = tmp_path / "pool.yaml"
        pool.write_text(
            "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata: {name: tls-v4}\n"
            "spec: {subnet: 10.90.0.0/24, ips: [10.90.0.10-10.90.0.20], default: true}\n"
        )
        deadline = time.monotonic() + DEADLINE
        while True:
            applied = subprocess.run(
                [*ctl, *mine, "apply", "-f", str(pool)], capture_output=True, text=True, check=False
            )
            if applied.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert applied.returncode == 0, applied.stderr
        refused = subprocess.run([*ctl, "get", "ippools"], capture_output=True, text=True, check=False)
        assert refused.returncode != 0 and "cannot reach the controller" in refused.stderr
        start_service(agent)
        with grpc.insecure_channel(f"unix:{agent_sock}") as channel:
            reply = cni_pb2_grpc.CniServiceStub(channel).IpamAdd(
                cni_pb2.IpamAddRequest(
                    call=cni_call("ADD", net_conf(default_ipv4_ippool=["tls-v4"]), netns="/proc/self/ns/net")
                ),
                timeout=DEADLINE,
            )
        assert "10.90.0.10/24" in reply.result.decode()
    finally:
        agent.stop()
        controller.stop()
