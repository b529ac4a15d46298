"""Readiness: is each component this process depends on reachable right now?"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from enclave.components import Components
from infra.db import ping
from infra.migrate import current_revision, head_revision
from infra.settings import Environment, Settings
from infra.tasks import celery_app


@dataclass(frozen=True)
class ComponentStatus:
    """One component's check result."""

    name: str
    ok: bool
    detail: str
    elapsed_ms: float


def _timed(name: str, check: Callable[[], str]) -> ComponentStatus:
    start = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # every failure is reported, none is raised
        detail = f"{type(exc).__name__}: {exc}"[:500]
        ok = False
    return ComponentStatus(name, ok, detail, round((time.perf_counter() - start) * 1000, 1))


def _database(components: Components) -> str:
    ping(components.engine)
    current, head = current_revision(components.engine), head_revision(components.engine)
    if current != head:
        raise RuntimeError(f"schema at {current}, code expects {head}: run `enclave db upgrade`")
    return f"{components.engine.dialect.name} at revision {current}"


def _broker(components: Components) -> str:
    if components.settings.tasks_in_process:
        return "tasks run in-process (no broker configured)"
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
        return f"{connection.transport_cls} broker reachable"


def _storage(components: Components) -> str:
    # Building the backend is part of the check: a bad folder or endpoint fails here, reported.
    return components.storage.check()


def _keys(components: Components) -> str:
    return components.keys.check()


def _email(components: Components) -> str:
    from infra.email.transport import check

    return check(components.settings)


def _checks_email(settings: Settings) -> bool:
    # Without an SMTP host, development and test write messages to a folder: nothing to reach.
    return bool(settings.smtp_host) or settings.environment is Environment.production


def check_all(components: Components) -> list[ComponentStatus]:
    """Check database, broker, storage, keys and (with an SMTP host, or in production) email; never raises."""
    results = [
        _timed("database", lambda: _database(components)),
        _timed("broker", lambda: _broker(components)),
        _timed("storage", lambda: _storage(components)),
        _timed("keys", lambda: _keys(components)),
    ]
    if _checks_email(components.settings):
        results.append(_timed("email", lambda: _email(components)))
    return results
