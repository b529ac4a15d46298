"""The app served by uvicorn in a child process, for the HTTP benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def serve(factory: str, database_url: str, data_dir: Path) -> Iterator[str]:
    """Serve ``factory`` (``module:function``) on a free port in one process; yields its base URL."""
    from tests.support.processes import free_port, stop, wait_for_http

    port = free_port()
    env = {
        **os.environ,
        "ENCLAVE_ENVIRONMENT": "test",
        "ENCLAVE_DATA_DIR": str(data_dir),
        "ENCLAVE_DATABASE_URL": database_url,
        "ENCLAVE_LOG_LEVEL": "WARNING",
    }
    log = data_dir / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", server, log)
        yield base
    finally:
        stop(server)
