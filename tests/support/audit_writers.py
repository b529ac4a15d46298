"""Processes that append to the audit ledger at the same time (used by tests and the benchmark)."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from sqlalchemy import text

from access.audit.actions import NoDetails, Role, register_action
from access.audit.sealer import flush_all
from access.audit.service import Actor, record
from infra.db import make_engine, make_session_factory, session_scope

LOAD_ACTION = register_action("test.load_appended", NoDetails)


def append_many(
    url: str,
    writer: int,
    count: int,
    *,
    signals: Any = None,
    per_transaction: int = 1,
    audited: bool = True,
) -> None:
    """Write ``count`` entries, ``per_transaction`` in each transaction, as requests would.

    With ``audited`` off, each transaction inserts the same number of rows into a plain table
    instead: the floor that any transactional write costs on this machine.
    """
    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    actor = Actor(f"acct-writer-{writer}", Role.system)
    with engine.connect():
        pass  # connect before the start signal, so start-up is not measured
    if signals is not None:
        ready, go, _ = signals
        ready.release()
        go.wait()
    for first in range(0, count, per_transaction):
        with session_scope(factory) as session:
            for i in range(first, min(first + per_transaction, count)):
                if audited:
                    record(session, actor, LOAD_ACTION, target_type="load", target_id=f"w{writer}-{i}")
                else:
                    session.execute(
                        text("INSERT INTO bench_plain (label) VALUES (:label)"), {"label": f"{i}"}
                    )
    flush_all()  # this process's entries are all chained before it reports
    if signals is not None:
        signals[2].put(time.time())
    engine.dispose()


def run_writers(
    url: str, writers: int, per_writer: int, per_transaction: int = 1, audited: bool = True
) -> float:
    """Run the writers in separate processes; seconds from the start signal until the last one is done.

    Process start-up (interpreter, imports, connection) and shutdown are not counted; chaining
    every entry is (each process chains what it owes before it reports).
    """
    context = multiprocessing.get_context("spawn")
    ready = context.Semaphore(0)
    go = context.Event()
    done = context.Queue()
    processes = [
        context.Process(
            target=append_many,
            args=(url, w, per_writer),
            kwargs={"signals": (ready, go, done), "per_transaction": per_transaction, "audited": audited},
        )
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        if not ready.acquire(timeout=120):
            raise RuntimeError("a writer process did not start within 120 s")
    start = time.time()
    go.set()
    finished = [done.get(timeout=3600) for _ in processes]
    for process in processes:
        process.join()
    elapsed = max(finished) - start
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} writer processes failed: exit codes {failed}")
    return elapsed
