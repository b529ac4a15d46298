"""The Docker Compose stack and the image definition are valid and complete."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / "deploy" / "env.example"


def _compose_client_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as Docker Compose resolves it (or as YAML with merge keys when no client exists)."""
    if _compose_client_available():
        result = subprocess.run(
            [
                "docker",
                "compose",
                "-f",
                str(COMPOSE),
                "--env-file",
                str(ENV_EXAMPLE),
                "config",
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return yaml.safe_load(result.stdout)
    return yaml.safe_load(COMPOSE.read_text())


def test_stack_has_every_service(compose):
    assert {"api", "worker", "beat", "postgres", "redis", "minio", "minio-init", "migrate"} <= set(
        compose["services"]
    )


def test_every_dependency_names_a_service_and_stateful_services_have_health_checks(compose):
    services = compose["services"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    for name in ("api", "postgres", "redis", "minio"):
        assert "healthcheck" in services[name], name


def test_named_volumes_are_declared(compose):
    declared = set(compose.get("volumes", {}))
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if not source.startswith(("/", ".")):
                assert source in declared, source


def test_every_variable_the_stack_needs_is_in_the_example_env_file():
    needed = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    provided = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert needed <= provided, needed - provided


def test_application_services_run_in_production_mode_with_real_backends(compose):
    api = compose["services"]["api"]
    environment = api["environment"]
    assert environment["ENCLAVE_ENVIRONMENT"] == "production"
    assert environment["ENCLAVE_STORAGE_BACKEND"] == "s3"
    assert environment["ENCLAVE_BROKER_URL"].startswith("redis://")


def test_image_is_multi_stage_and_runs_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, flags=re.MULTILINE)) >= 2
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert users, "the image must switch to an unprivileged user"
    assert users[-1] not in {"root", "0"}
    assert "uv sync --locked" in dockerfile
