"""Access benchmark: access-token verification, and an authorised no-op endpoint next to an open one.

Verification: ``TokenService.verify`` on an ES256 token signed by the key-file backend, in one
process. Endpoints: ``enclave``'s app served by uvicorn (one process) on PostgreSQL, two no-op
endpoints added for the benchmark — one open, one behind the same ``CurrentPrincipal`` dependency
as every protected endpoint (token checked, account loaded and checked active) — driven over
HTTP/1.1 keep-alive by client threads in this process.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.server import serve


def verify_benchmark(count: int = 5000) -> dict[str, Any]:
    """Token verifications per second."""
    from access.accounts.tokens import TokenService
    from access.audit.actions import Role
    from infra.keys import FileKeyBackend
    from infra.settings import load_settings

    with tempfile.TemporaryDirectory() as folder:
        keys = FileKeyBackend(Path(folder) / "keys")
        tokens = TokenService.from_settings(keys, load_settings(environment="test", data_dir=Path(folder)))
        token = tokens.issue(subject="acct-1", session_id="sid-1", roles=[Role.researcher]).token
        tokens.verify(token)
        start = time.perf_counter()
        for _ in range(count):
            tokens.verify(token)
        elapsed = time.perf_counter() - start
    return {"count": count, "seconds": elapsed, "per_second": count / elapsed}


def _prepare_account(url: str, data_dir: Path) -> tuple[str, str]:
    """A researcher account in the benchmark database; returns its email and password."""
    from access.accounts import service
    from access.accounts.schemas import AccountCreate
    from access.audit.actions import Role
    from access.audit.service import Actor
    from enclave.components import import_wiring
    from infra.db import make_engine, make_session_factory, session_scope
    from infra.migrate import upgrade

    import_wiring()
    engine = make_engine(url)
    upgrade(engine)
    password = "bench-Researcher-2026-long"
    with session_scope(make_session_factory(engine)) as session:
        service.create_account(
            session,
            Actor.system(),
            AccountCreate(
                email="bench.researcher@example.org",
                display_name="Benchmark researcher",
                roles=[Role.researcher],
                country=None,
                schools=[],
                password=password,
            ),
        )
    engine.dispose()
    return "bench.researcher@example.org", password


def _hammer(base: str, path: str, headers: dict[str, str], seconds: float, threads: int) -> dict[str, Any]:
    counts = [0] * threads
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
            while time.perf_counter() < stop:
                response = http.get(path)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return
                counts[index] += 1

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{path} failed: {errors[0]}")
    return {"requests": sum(counts), "seconds": elapsed, "per_second": sum(counts) / elapsed}


def endpoint_benchmark(url: str, seconds: float = 10.0, threads: int = 4) -> dict[str, Any]:
    """Requests per second of the open and the authorised no-op endpoint, and their ratio."""
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        email, password = _prepare_account(url, data_dir)
        with serve("bench.access_app:app", url, data_dir) as base:
            answer = httpx.post(f"{base}/api/auth/token", data={"username": email, "password": password})
            answer.raise_for_status()
            headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            _hammer(base, "/bench/authorised", headers, 1.0, threads)  # warm up
            opened = _hammer(base, "/bench/open", {}, seconds, threads)
            authorised = _hammer(base, "/bench/authorised", headers, seconds, threads)
    return {
        "open": opened,
        "authorised": authorised,
        "ratio": authorised["per_second"] / opened["per_second"],
    }
