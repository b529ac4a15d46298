"""Browser tests: Debian chromium for Playwright, and the product served against a committed database.

Browser tests need data that is really committed (the server is another process), so each module
gets its own database from ``committed_database`` and serves it with ``serve_product``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.db import make_engine
from infra.migrate import upgrade
from tests.conftest import recreate_database
from tests.support.processes import free_port, stop, wait_for_http

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def committed_database(name: str) -> str:
    """A fresh, migrated database for one browser-test module; its URL."""
    # A missing browser is a set-up error (`make test` installs it), never a silent skip.
    assert Path(CHROMIUM).exists(), "Debian chromium is not installed: run `make test` (scripts/services.sh)"
    url = recreate_database(name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@contextmanager
def serve_product(database_url: str, data_dir: Path) -> Iterator[str]:
    """``enclave serve`` in its own process on a free port (tasks in-process); yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    env = {
        **os.environ,
        "ENCLAVE_ENVIRONMENT": "test",
        "ENCLAVE_DATA_DIR": str(data_dir),
        "ENCLAVE_DATABASE_URL": database_url,
        "ENCLAVE_BROKER_URL": "",
        "ENCLAVE_LOG_LEVEL": "WARNING",
        "ENCLAVE_PUBLIC_URL": base,
    }
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "enclave", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"{base}/health", process, log)
        yield base
    finally:
        stop(process)
