"""Processes that append to the audit ledger at the same time (used by tests and the benchmark)."""

from __future__ import annotations

import multiprocessing
import time

from access.audit.actions import NoDetails, Role, register_action
from access.audit.service import Actor, record
from infra.db import make_engine, make_session_factory, session_scope

LOAD_ACTION = register_action("test.load_appended", NoDetails)


def append_many(url: str, writer: int, count: int) -> None:
    """Append ``count`` entries, one transaction each, as if ``count`` requests each did one change."""
    engine = make_engine(url, pool_size=1)
    factory = make_session_factory(engine)
    actor = Actor(f"acct-writer-{writer}", Role.system)
    for i in range(count):
        with session_scope(factory) as session:
            record(session, actor, LOAD_ACTION, target_type="load", target_id=f"w{writer}-{i}")
    engine.dispose()


def run_writers(url: str, writers: int, per_writer: int) -> float:
    """Run the writers in separate processes; return the wall-clock seconds they took."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=append_many, args=(url, w, per_writer)) for w in range(writers)]
    start = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - start
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} writer processes failed: exit codes {failed}")
    return elapsed
