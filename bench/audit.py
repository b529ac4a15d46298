"""Audit ledger benchmark: concurrent appends on PostgreSQL, and streaming verification speed.

Append: 8 writer processes record entries through ``record``, as 8 API or worker processes would,
one entry per transaction and ten per transaction (a bulk import), next to the same processes
writing plain rows with no ledger at all: the floor of a transaction on this machine.

Verify: a ledger of 1,000,000 entries (built in bulk with the same
canonical encoding, since appending a million entries one by one would only measure appends again)
is verified by ``verify_ledger`` in a fresh process (best of two runs, as the machine is shared)
whose peak memory is read from the OS; the same is done for 100,000 entries to show memory stays
flat. The speed is compared with raw SHA-256 of
the same canonical bytes on the same machine.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

from access.audit import canonical
from access.audit.models import GENESIS_HASH
from infra.db import make_engine
from infra.migrate import upgrade


def append_benchmark(
    url: str, writers: int = 8, per_writer: int = 1000, per_transaction: int = 1, audited: bool = True
) -> dict[str, Any]:
    """Entries per second with ``writers`` concurrent processes (all chained when it ends)."""
    from sqlalchemy import func, select, text

    from access.audit.models import AuditEntry
    from tests.support.audit_writers import run_writers

    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE IF NOT EXISTS bench_plain (id bigserial PRIMARY KEY, label text)")
        )
    elapsed = run_writers(url, writers, per_writer, per_transaction, audited)
    total = writers * per_writer
    if audited:
        with engine.connect() as connection:
            chained = connection.scalar(select(func.count()).select_from(AuditEntry))
        if chained != total:
            raise RuntimeError(f"{chained} of {total} entries were chained")
    engine.dispose()
    return {"writers": writers, "entries": total, "seconds": elapsed, "per_second": total / elapsed}


def _documents(count: int) -> Any:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        moment = start + timedelta(milliseconds=seq)
        document = canonical.entry_document(
            seq=seq,
            occurred_at=moment,
            actor_id=f"acct-{seq % 2400:04d}",
            actor_role="data_steward",
            action="consent.decision_recorded",
            target_type="subject",
            target_id=f"psn-{seq % 18000:05d}",
            outcome="ok",
            request_id=f"{seq:032x}",
            project_id=None,
            details={"purpose": "questionnaires", "form_sha256": "ab" * 32},
            prev_hash=prev,
        )
        digest = canonical.entry_hash(document)
        yield document, moment, digest
        prev = digest


def build_ledger(url: str, count: int) -> None:
    """Fill an empty migrated ledger with ``count`` valid chained entries using COPY."""
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    last = GENESIS_HASH
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        columns = (
            "seq, occurred_at, actor_id, actor_role, action, target_type, target_id, outcome, "
            "request_id, project_id, details, prev_hash, entry_hash"
        )
        with cur.copy(f"COPY audit_entry ({columns}) FROM STDIN") as copy:
            for doc, moment, digest in _documents(count):
                copy.write_row(
                    (
                        doc["seq"], moment, doc["actor_id"], doc["actor_role"], doc["action"],
                        doc["target_type"], doc["target_id"], doc["outcome"], doc["request_id"],
                        doc["project_id"], orjson.dumps(doc["details"]).decode(), doc["prev_hash"], digest,
                    )
                )  # fmt: skip
                last = digest
        cur.execute("UPDATE audit_head SET seq = %s, entry_hash = %s WHERE id = 1", (count, last))
        conn.commit()


def _peak_memory_mib() -> float:
    # VmHWM belongs to this process's own address space; getrusage's maxrss would carry over the
    # parent's peak through the exec that starts a spawned process.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _verify_in_child(url: str, queue: Any, rounds: int) -> None:
    from access.audit.service import verify_ledger

    engine = make_engine(url)
    best = float("inf")
    with engine.connect() as connection:
        for _ in range(rounds):
            start = time.perf_counter()
            report = verify_ledger(connection, public_keys={})
            best = min(best, time.perf_counter() - start)
    queue.put(
        {"entries": report.entries, "ok": report.ok, "seconds": best, "peak_rss_mib": _peak_memory_mib()}
    )


def verify_benchmark(url: str, rounds: int = 2) -> dict[str, Any]:
    """Verify the ledger at ``url`` in a fresh process; best time of ``rounds`` and peak memory."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_verify_in_child, args=(url, queue, rounds))
    process.start()
    result: dict[str, Any] = queue.get()
    process.join()
    result["per_second"] = result["entries"] / result["seconds"]
    return result


def sha256_baseline(count: int) -> dict[str, Any]:
    """Raw SHA-256 of the same canonical bytes, in memory: the floor for any verification."""
    blobs = [canonical.canonical_bytes(doc) for doc, _, _ in _documents(count)]
    size = sum(len(b) for b in blobs)
    buffer = io.BytesIO()
    start = time.perf_counter()
    for blob in blobs:
        buffer.write(hashlib.sha256(blob).digest())
    elapsed = time.perf_counter() - start
    return {"entries": count, "bytes": size, "seconds": elapsed, "per_second": count / elapsed}
