"""``enclave admin create`` bootstraps the first administrator, with TOTP, on a real database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient

from enclave.app import create_app
from infra.db import make_engine
from infra.migrate import upgrade
from infra.settings import Settings, load_settings
from tests.conftest import recreate_database

EMAIL = "first.admin@example.org"
NAME = "First Admin"


@pytest.fixture(scope="module")
def cli_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings on a fresh, migrated database whose data the command really commits."""
    url = recreate_database("enclave_test_admin_cli")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return load_settings(
        environment="test",
        data_dir=tmp_path_factory.mktemp("admin-cli"),
        database_url=url,
        log_level="INFO",
    )


def _run(settings: Settings, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ENCLAVE_ENVIRONMENT": "test",
        "ENCLAVE_DATA_DIR": str(settings.data_dir),
        "ENCLAVE_DATABASE_URL": settings.effective_database_url,
        "ENCLAVE_LOG_LEVEL": "INFO",
    }
    return subprocess.run(
        [sys.executable, "-m", "enclave", "admin", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_admin_create_prints_the_totp_secret_once_and_the_admin_can_sign_in(cli_settings):
    result = _run(
        cli_settings,
        "create",
        "--email",
        EMAIL,
        "--name",
        NAME,
        "--password-from-stdin",
        stdin="violet-harbour-2031\n",
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert EMAIL not in output
    assert NAME not in output
    account_id = re.search(r"account id: (\S+)", result.stdout).group(1)
    secret = re.search(r"TOTP secret: ([A-Z2-7]+)", result.stdout).group(1)
    assert "otpauth://totp/" in result.stdout
    assert len(re.findall(r"^\s+[a-z2-9]{5}-[a-z2-9]{5}$", result.stdout, re.MULTILINE)) == 10

    with TestClient(create_app(cli_settings), raise_server_exceptions=False) as client:
        form = {"username": EMAIL, "password": "violet-harbour-2031", "totp": pyotp.TOTP(secret).now()}
        signed_in = client.post("/api/auth/token", data=form)
        assert signed_in.status_code == 200, signed_in.text
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        me = client.get("/api/auth/me", headers=headers).json()
        assert me["account_id"] == account_id
        assert me["roles"] == ["admin"]
        assert client.get("/api/admin/accounts", headers=headers).status_code == 200


def test_admin_create_refuses_a_weak_password_with_a_reason(cli_settings):
    result = _run(
        cli_settings,
        "create",
        "--email",
        "second.admin@example.org",
        "--name",
        "Second",
        "--password-from-stdin",
        stdin="password1234\n",
    )
    assert result.returncode == 2
    assert "common" in result.stderr
    assert "second.admin" not in result.stdout + result.stderr


def test_token_key_rotation_from_the_command_line(cli_settings):
    result = _run(cli_settings, "rotate-token-key", stdin="")
    assert result.returncode == 0, result.stderr
    assert "access-token:v2" in result.stdout
