"""Processes that append to the audit ledger at the same time (used by tests and the benchmark)."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from access.audit.actions import NoDetails, Role, register_action
from access.audit.service import Actor, record
from infra.db import make_engine, make_session_factory, session_scope

LOAD_ACTION = register_action("test.load_appended", NoDetails)


def append_many(url: str, writer: int, count: int, ready: Any = None, go: Any = None) -> None:
    """Append ``count`` entries, one transaction each, as if ``count`` requests each did one change."""
    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    actor = Actor(f"acct-writer-{writer}", Role.system)
    with engine.connect():
        pass  # connect before the start signal, so start-up is not measured
    if ready is not None and go is not None:
        ready.release()
        go.wait()
    for i in range(count):
        with session_scope(factory) as session:
            record(session, actor, LOAD_ACTION, target_type="load", target_id=f"w{writer}-{i}")
    engine.dispose()


def run_writers(url: str, writers: int, per_writer: int) -> float:
    """Run the writers in separate processes; return the seconds from the start signal to the last commit.

    Process start-up (interpreter, imports, connection) happens before the signal and is not counted.
    """
    context = multiprocessing.get_context("spawn")
    ready = context.Semaphore(0)
    go = context.Event()
    processes = [
        context.Process(target=append_many, args=(url, w, per_writer, ready, go)) for w in range(writers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        if not ready.acquire(timeout=120):
            raise RuntimeError("a writer process did not start within 120 s")
    start = time.perf_counter()
    go.set()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - start
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} writer processes failed: exit codes {failed}")
    return elapsed
