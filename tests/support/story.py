"""The whole product as an operator deploys it, for the story test: ``enclave serve``, a Celery worker and
beat as processes of their own on Redis, PostgreSQL with committed data, SeaweedFS over HTTPS, OpenBao
transit as the key backend and an SMTP server on loopback; and staff who sign in over HTTP with TOTP.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pyotp

from infra.settings import Settings, load_settings
from tests.conftest import RUN_ID
from tests.support.openbao import OpenBao
from tests.support.processes import free_port, stop, wait_for_http
from tests.support.seaweedfs import SeaweedFS
from tests.support.smtp import SmtpServer

# A Redis database of its own, so the session's other worker (tests.support.celery_worker) never
# takes this story's jobs, nor this story's worker theirs.
STORY_REDIS_URL = os.environ.get(
    "ENCLAVE_TEST_STORY_REDIS", f"redis://127.0.0.1:6379/{1 + (RUN_ID + 7) % 15}"
)

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.25) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@dataclass
class Deployment:
    """The running processes and how to reach them."""

    base: str
    settings: Settings
    env: dict[str, str]
    logs: dict[str, Path] = field(default_factory=dict)

    def log_tail(self, name: str, lines: int = 60) -> str:
        """The end of one process's log, for failure messages."""
        path = self.logs[name]
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def deployment_env(
    *,
    database_url: str,
    data_dir: Path,
    base: str,
    weed: SeaweedFS,
    bao: OpenBao,
    smtp: SmtpServer,
    bucket: str,
) -> dict[str, str]:
    """The ``ENCLAVE_*`` variables an operator would set for this deployment."""
    return {
        "ENCLAVE_ENVIRONMENT": "test",
        "ENCLAVE_DATA_DIR": str(data_dir),
        "ENCLAVE_DATABASE_URL": database_url,
        "ENCLAVE_BROKER_URL": STORY_REDIS_URL,
        "ENCLAVE_PUBLIC_URL": base,
        "ENCLAVE_LOG_LEVEL": "INFO",
        "ENCLAVE_STORAGE_BACKEND": "s3",
        "ENCLAVE_S3_ENDPOINT": weed.endpoint,
        "ENCLAVE_S3_ACCESS_KEY": weed.access_key,
        "ENCLAVE_S3_SECRET_KEY": weed.secret_key,
        "ENCLAVE_S3_BUCKET": bucket,
        "ENCLAVE_S3_SECURE": "true",
        "ENCLAVE_S3_CA_BUNDLE": str(weed.ca_bundle),
        "ENCLAVE_KEY_BACKEND": "vault",
        "ENCLAVE_VAULT_ADDR": bao.addr,
        "ENCLAVE_VAULT_TOKEN": bao.token,
        "ENCLAVE_SMTP_HOST": smtp.host,
        "ENCLAVE_SMTP_PORT": str(smtp.port),
        "ENCLAVE_SMTP_TLS": "none",
        "ENCLAVE_ACCESS_TOKEN_TTL_SECONDS": "900",
    }


def settings_of(env: dict[str, str]) -> Settings:
    """The same settings inside the test process (to read the store with the enclave's keys)."""
    values: dict[str, Any] = {
        name.removeprefix("ENCLAVE_").lower(): value
        for name, value in env.items()
        if name.startswith("ENCLAVE_")
    }
    return load_settings(**values)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "enclave", *args],
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def deploy(
    *,
    database_url: str,
    data_dir: Path,
    weed: SeaweedFS,
    bao: OpenBao,
    smtp: SmtpServer,
    bucket: str,
    before_start: Callable[[dict[str, str]], object] | None = None,
) -> Iterator[Deployment]:
    """Start the API, a worker and beat (after ``before_start``, e.g. the migrations); stop them after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = deployment_env(
        database_url=database_url, data_dir=data_dir, base=base, weed=weed, bao=bao, smtp=smtp, bucket=bucket
    )
    deployment = Deployment(base, settings_of(env), env)
    if before_start is not None:
        before_start(env)
    with ExitStack() as stack:
        for name, args in (
            ("worker", ["worker", "--concurrency=1"]),
            ("beat", ["beat"]),
            ("api", ["serve", "--host", "127.0.0.1", "--port", str(port)]),
        ):
            log = data_dir / f"{name}.log"
            deployment.logs[name] = log
            process = _spawn(args, env, log)
            stack.callback(stop, process)
            if name == "api":
                # Importing the product takes seconds, far longer on a busy machine.
                wait_for_http(f"{base}/health", process, log, timeout=300)
        yield deployment


def enclave_cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """Run an ``enclave`` command as an operator would; its output (asserts success)."""
    done = subprocess.run(
        [sys.executable, "-m", "enclave", *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        input=stdin.encode(),
        capture_output=True,
        timeout=300,
        check=False,
    )
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, output + done.stderr.decode(errors="replace")
    return output


@dataclass
class Person:
    """A staff member with their own HTTP client, signed in with a bearer token."""

    email: str
    password: str
    totp_secret: str | None
    client: httpx.Client
    account_id: str = ""

    def next_code(self) -> str:
        """A code the server has not seen yet: the next 30-second step's (it accepts one step ahead)."""
        assert self.totp_secret is not None
        return pyotp.TOTP(self.totp_secret).at(time.time() + 30)

    def sign_in(self, code: str | None = None) -> dict[str, Any]:
        """``POST /api/auth/token`` with password and a TOTP code; keeps the access token."""
        form = {"username": self.email, "password": self.password}
        if self.totp_secret is not None:
            form["totp"] = code or self.next_code()
        answer = self.client.post("/api/auth/token", data=form)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        self.client.headers["Authorization"] = f"Bearer {body['access_token']}"
        return body

    def enrol_totp(self) -> list[str]:
        """Enrol an authenticator: the secret from the server, confirmed with its current code."""
        started = self.client.post("/api/auth/mfa/enrol")
        assert started.status_code == 200, started.text
        self.totp_secret = started.json()["secret"]
        confirmed = self.client.post(
            "/api/auth/mfa/confirm", json={"code": pyotp.TOTP(self.totp_secret).now()}
        )
        assert confirmed.status_code == 200, confirmed.text
        codes: list[str] = confirmed.json()["recovery_codes"]
        return codes


LINK = re.compile(r"https?://[^\s<>\"]+/f/[A-Za-z0-9_\-]+")


def link_in(text: str) -> str:
    """The personal link of an invitation email."""
    found = LINK.search(text)
    assert found, text
    return found.group(0)
