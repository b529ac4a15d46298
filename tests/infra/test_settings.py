"""Settings are validated at start-up, with a message naming each bad variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infra.settings import DEFAULT_SECRET, SettingsError, load_settings


def test_bad_value_is_rejected_with_a_message_naming_the_variable():
    with pytest.raises(SettingsError) as caught:
        load_settings(database_pool_size=0, log_level="LOUD")
    message = str(caught.value)
    assert "ENCLAVE_DATABASE_POOL_SIZE" in message
    assert "ENCLAVE_LOG_LEVEL" in message


def test_production_refuses_the_default_secret_and_sqlite():
    with pytest.raises(SettingsError) as caught:
        load_settings(environment="production")
    message = str(caught.value)
    assert "ENCLAVE_SECRET_KEY" in message
    assert "ENCLAVE_DATABASE_URL" in message


def test_production_accepts_real_secrets():
    settings = load_settings(
        environment="production",
        secret_key="x" * 40,
        database_url="postgresql://enclave@db:5432/enclave",
    )
    assert settings.effective_database_url.startswith("postgresql+psycopg://")
    assert settings.secret_key.get_secret_value() != DEFAULT_SECRET


def test_s3_backend_requires_its_credentials():
    with pytest.raises(SettingsError) as caught:
        load_settings(storage_backend="s3")
    assert "ENCLAVE_S3_ENDPOINT" in str(caught.value)
    assert "ENCLAVE_S3_SECRET_KEY" in str(caught.value)


def test_secrets_are_never_echoed_in_errors():
    with pytest.raises(SettingsError) as caught:
        load_settings(broker_url="ftp://user:hunter2@host/")
    assert "ENCLAVE_BROKER_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_cli_refuses_to_start_with_a_bad_setting(tmp_path):
    env = {**os.environ, "ENCLAVE_DATA_DIR": str(tmp_path), "ENCLAVE_STORAGE_BACKEND": "floppy"}
    result = subprocess.run(
        [sys.executable, "-m", "enclave", "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "ENCLAVE_STORAGE_BACKEND" in result.stderr
