"""Sign-in, throttling, refresh and MFA also work on the embedded default's SQLite database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from access.audit.actions import Role
from enclave.app import create_app
from enclave.components import Components, build_components
from infra.db import session_scope
from infra.migrate import upgrade
from infra.settings import load_settings
from tests.support.auth import StaffUser, create_staff, sign_in


@pytest.fixture
def sqlite_app(tmp_path) -> Iterator[tuple[TestClient, Components]]:
    settings = load_settings(
        environment="test", data_dir=tmp_path / "var", database_url="", log_level="WARNING"
    )
    components = build_components(settings)
    upgrade(components.engine)
    with TestClient(create_app(settings, components), raise_server_exceptions=False) as client:
        yield client, components
    components.engine.dispose()


def _staff(components: Components, roles: list[Role]) -> StaffUser:
    with session_scope(components.session_factory) as session:
        return create_staff(session, components, roles=roles)


def test_sign_in_refresh_and_throttling_work_on_sqlite(sqlite_app):
    client, components = sqlite_app
    researcher = _staff(components, [Role.researcher])
    dpo = _staff(components, [Role.dpo])
    tokens = sign_in(client, researcher)
    assert sign_in(client, dpo)["access_token"]
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    )
    for _ in range(components.settings.login_failures_before_delay):
        wrong = {"username": researcher.email, "password": "wrong-password-123"}
        assert client.post("/api/auth/token", data=wrong).status_code == 401
    right = {"username": researcher.email, "password": researcher.password}
    throttled = client.post("/api/auth/token", data=right)
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"]
