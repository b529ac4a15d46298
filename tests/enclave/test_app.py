"""The web application: liveness, readiness, docs, the base page, errors and headers."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel

from enclave.app import create_app
from infra.errors import Conflict
from infra.logging import Pii, configure_logging, get_logger


def test_health_answers_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_every_component_green(client):
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert {c["name"] for c in body["components"]} == {"database", "broker", "storage", "keys"}
    database = next(c for c in body["components"] if c["name"] == "database")
    assert "postgresql" in database["detail"]


def test_ready_names_the_failing_component(settings, components, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the object folder should be")
    broken = settings.model_copy(update={"storage_local_path": blocker / "objects"})
    components.settings = broken
    with TestClient(create_app(broken, components), raise_server_exceptions=False) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    failing = [c["name"] for c in body["components"] if not c["ok"]]
    assert failing == ["storage"]


def test_api_docs_are_served_without_an_external_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/ready" in schema["paths"]


def test_base_page_follows_the_browser_language(client):
    page = client.get("/", headers={"Accept-Language": "bg-BG,bg;q=0.9,en;q=0.5"})
    assert page.status_code == 200
    assert '<html lang="bg">' in page.text
    assert "Към основното съдържание" in page.text
    assert page.headers["content-language"] == "bg"


def test_language_switch_is_remembered(client):
    page = client.get("/?lang=nl")
    assert '<html lang="nl">' in page.text
    assert "lang=nl" in page.headers["set-cookie"]
    again = client.get("/", headers={"Accept-Language": "es"})
    assert '<html lang="nl">' in again.text


def test_unknown_language_falls_back_to_english(client):
    page = client.get("/", headers={"Accept-Language": "tlh, xx;q=0.5"})
    assert '<html lang="en">' in page.text


def test_base_page_is_accessible_and_self_contained(client):
    html = client.get("/").text
    for landmark in ("<header", "<main", "<footer", "<nav aria-label="):
        assert landmark in html
    assert 'href="#main"' in html
    assert "http://" not in html.replace("http://127.0.0.1", "")
    assert "https://" not in html


def test_security_headers_and_request_id_on_every_response(client):
    response = client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert len(response.headers["x-request-id"]) == 32
    echoed = client.get("/health", headers={"X-Request-ID": "client-chosen-id-123"})
    assert echoed.headers["x-request-id"] == "client-chosen-id-123"
    hostile = client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert hostile.headers["x-request-id"] != "x" * 500


class Item(BaseModel):
    count: int


@pytest.fixture
def error_client(settings, components):
    router = APIRouter()

    @router.post("/test/items")
    def create_item(item: Item) -> dict[str, int]:
        return {"count": item.count}

    @router.get("/test/conflict")
    def conflict() -> None:
        raise Conflict("the form version is already published")

    @router.get("/test/crash")
    def crash() -> None:
        raise ZeroDivisionError("secret internal detail")

    app = create_app(settings, components)
    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_domain_errors_become_problem_documents(error_client):
    response = error_client.get("/test/conflict")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == "Conflict"
    assert body["detail"] == "the form version is already published"
    assert body["request_id"] == response.headers["x-request-id"]


def test_invalid_input_is_a_422_naming_the_field(error_client):
    response = error_client.post("/test/items", json={"count": "many"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "body.count" in response.json()["detail"]


def test_unknown_path_is_a_404_problem(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_unexpected_errors_do_not_leak_internals(error_client):
    response = error_client.get("/test/crash")
    assert response.status_code == 500
    assert "secret internal detail" not in response.text
    assert response.json()["title"] == "Internal error"


def test_logs_are_json_and_mask_personal_data(capsys):
    configure_logging("INFO", json=True)
    get_logger("test").info(
        "consent.decision_recorded", email="ana@example.org", guardian=Pii("Ana Pérez"), pseudonym="p-123"
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "consent.decision_recorded"
    assert record["pseudonym"] == "p-123"
    assert "ana@example.org" not in line
    assert "Ana" not in line
