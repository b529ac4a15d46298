"""The README's run command: the product on its embedded default, with nothing else to start."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.support.processes import free_port, stop, wait_for_http


def _embedded_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env["ENCLAVE_DATA_DIR"] = str(tmp_path / "var")
    env["COLUMNS"] = "200"
    return env


def test_demo_serves_health_ready_docs_and_the_base_page_on_sqlite(tmp_path):
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            # A small seed: the full demo's seeding is timed in tests/enclave/test_demo.py.
            [
                sys.executable,
                "-m",
                "enclave",
                "demo",
                "--students",
                "600",
                "--schools",
                "12",
                "--port",
                str(port),
            ],
            env=_embedded_env(tmp_path),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", process, log, timeout=180)
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
        ready = httpx.get(f"{base}/ready")
        assert ready.status_code == 200, ready.text
        components = {c["name"]: c for c in ready.json()["components"]}
        assert all(c["ok"] for c in components.values()), components
        assert "sqlite" in components["database"]["detail"]
        assert "in-process" in components["broker"]["detail"]
        assert "local" in components["storage"]["detail"]
        assert httpx.get(f"{base}/docs").status_code == 200
        page = httpx.get(f"{base}/", headers={"Accept-Language": "pl"})
        assert page.status_code == 200
        assert '<html lang="pl">' in page.text
    finally:
        stop(process)
    assert (tmp_path / "var" / "enclave.db").exists()
    key_dir = tmp_path / "var" / "keys"
    assert key_dir.is_dir()
    assert key_dir.stat().st_mode & 0o077 == 0


def test_check_command_reports_each_component(tmp_path):
    env = _embedded_env(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "enclave", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    result = subprocess.run(
        [sys.executable, "-m", "enclave", "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("database", "broker", "storage", "keys"):
        assert name in result.stdout


def test_check_command_fails_when_the_schema_is_missing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "enclave", "check"],
        env=_embedded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "enclave db upgrade" in result.stdout
