"""A real Celery worker (``enclave worker``) on the machine's Redis, with its own committed database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from infra.db import make_engine
from infra.migrate import upgrade
from infra.settings import Settings, load_settings
from tests.conftest import REDIS_URL, recreate_database


@dataclass
class WorkerHandle:
    """A running worker process and the settings that reach it."""

    process: subprocess.Popen[bytes]
    settings: Settings
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        """The end of the worker's log, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_worker(
    settings: Settings, log_path: Path, extra_args: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``enclave worker`` with the settings passed through the environment."""
    env = {**os.environ}
    env.update(
        {
            "ENCLAVE_ENVIRONMENT": "test",
            "ENCLAVE_DATA_DIR": str(settings.data_dir),
            "ENCLAVE_DATABASE_URL": settings.effective_database_url,
            "ENCLAVE_BROKER_URL": settings.broker_url,
            "ENCLAVE_LOG_LEVEL": "INFO",
        }
    )
    handle = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "enclave", "worker", "--concurrency=1", *(extra_args or [])],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="session")
def worker_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with a Redis broker and a database whose data is really committed."""
    url = recreate_database("enclave_test_worker")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()
    return load_settings(
        environment="test",
        data_dir=tmp_path_factory.mktemp("worker-data"),
        database_url=url,
        broker_url=REDIS_URL,
        log_level="WARNING",
    )


@pytest.fixture(scope="session")
def celery_worker(
    worker_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerHandle]:
    """A worker consuming every queue; waits until it answers a ping."""
    from infra.tasks import configure_celery, ping

    log_path = tmp_path_factory.mktemp("worker-log") / "worker.log"
    process = start_worker(worker_settings, log_path)
    handle = WorkerHandle(process, worker_settings, log_path)
    configure_celery(worker_settings)
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}:\n{handle.log_tail()}")
            try:
                ping.apply_async().get(timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not answer within 60 s:\n{handle.log_tail()}") from None
        yield handle
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
