"""Pooled PostgreSQL connections that the server has closed are replaced, not handed out."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import text

from infra.db import make_engine
from tests.conftest import _admin_conninfo


def _terminate(pids: list[int]) -> None:
    with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)  # let the server's goodbye reach the pooled sockets


def test_a_connection_the_server_terminated_is_replaced_on_checkout(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=2)
    try:
        with engine.connect() as first, engine.connect() as second:
            pids = [c.scalar(text("SELECT pg_backend_pid()")) for c in (first, second)]
        _terminate([int(pid) for pid in pids if pid is not None])

        # Both pooled connections are dead; each checkout finds that out and opens a fresh one.
        with engine.connect() as again, engine.connect() as other:
            fresh = {c.scalar(text("SELECT pg_backend_pid()")) for c in (again, other)}
        assert fresh.isdisjoint(pids)
        assert len(fresh) == 2
    finally:
        engine.dispose()


def test_a_live_pooled_connection_is_reused(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1)
    try:
        with engine.connect() as first:
            pid = first.scalar(text("SELECT pg_backend_pid()"))
        with engine.connect() as second:
            assert second.scalar(text("SELECT pg_backend_pid()")) == pid
    finally:
        engine.dispose()
