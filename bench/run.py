"""Run every benchmark against the machine's PostgreSQL and write the results to bench/README.md.

``make bench`` (or ``.venv/bin/python -m bench.run [--quick]``). ``--quick`` uses smaller sizes to
check the benchmarks still run; the README's table is only rewritten by a full run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench import access, audit, consent, crypto, demo, dp, ingest

PG_SERVER = os.environ.get("ENCLAVE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
README = Path(__file__).parent / "README.md"
APPEND_ROUNDS = 5


def fresh_database(name: str) -> str:
    """Drop and create a benchmark database; return its URL."""
    url = make_url(f"{PG_SERVER}/postgres")
    conninfo = f"host={url.host} port={url.port or 5432} user={url.username} dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_SERVER}/{name}"


def drop_database(name: str) -> None:
    """Remove a benchmark database."""
    url = make_url(f"{PG_SERVER}/postgres")
    conninfo = f"host={url.host} port={url.port or 5432} user={url.username} dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_audit(quick: bool) -> list[str]:
    """Audit ledger: appends with 8 writers, verification of 100k and 1M entries, SHA-256 floor."""
    lines = []
    per_writer = 200 if quick else 1000
    kinds = (
        ("plain rows, no ledger (the floor of any transaction here)", 1, False),
        ("audited, one entry per transaction", 1, True),
        ("audited, ten entries per transaction (bulk import)", 10, True),
    )
    # The kinds alternate, round after round, so that a slow spell of the machine (run-to-run
    # spread is about a third here) falls on all of them; each row gives the median round.
    rounds = 1 if quick else APPEND_ROUNDS
    rates: dict[str, list[float]] = {label: [] for label, _, _ in kinds}
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in kinds}
    for _ in range(rounds):
        for label, per_transaction, audited in kinds:
            appended = audit.append_benchmark(
                fresh_database("enclave_bench_append"), per_writer=per_writer,
                per_transaction=per_transaction, audited=audited,
            )  # fmt: skip
            drop_database("enclave_bench_append")
            rates[label].append(appended["per_second"])
            seconds[label].append(appended["seconds"])
    floor = rates[kinds[0][0]]
    for label, _, audited in kinds:
        runs = rates[label]
        middle = statistics.median(runs)
        spread = ", ".join(f"{rate:,.0f}" for rate in runs)
        of_floor = ""
        if audited:
            ratios = ", ".join(f"{rate / base:.2f}" for rate, base in zip(runs, floor, strict=True))
            of_floor = f"; of the floor in the same round: {ratios}"
        lines.append(
            f"| append: 8 writer processes, {label} "
            f"| {8 * per_writer:,} entries, median of {len(runs)} rounds "
            f"({statistics.median(seconds[label]):.1f} s); rounds: {spread}/s{of_floor} "
            f"| **{middle:,.0f} /s** | {'≥ 1,000/s' if audited else '—'} |"
        )
    sizes = [10_000, 50_000] if quick else [100_000, 1_000_000]
    for size in sizes:
        audit.build_ledger(fresh_database("enclave_bench_verify"), size)
        verified = audit.verify_benchmark(f"{PG_SERVER}/enclave_bench_verify")
        drop_database("enclave_bench_verify")
        if not verified["ok"] or verified["entries"] != size:
            raise RuntimeError(f"verification of the built ledger failed: {verified}")
        baseline = audit.sha256_baseline(size)
        ratio = verified["seconds"] / baseline["seconds"]
        lines.append(
            f"| audit verify {size:,} entries (streamed from PostgreSQL: chain, hashes, Merkle tree) "
            f"| {verified['seconds']:.1f} s (best of 2), peak memory {verified['peak_rss_mib']:.0f} MiB "
            f"| **{verified['per_second']:,.0f} entries/s** ({ratio:.1f}× the time of raw SHA-256 of the "
            f"same {baseline['bytes'] / 1e6:.0f} MB: {baseline['per_second']:,.0f}/s) | ≥ 50,000/s |"
        )
    return lines


def run_access(quick: bool) -> list[str]:
    """Token verification and an authorised no-op endpoint against an open one."""
    verified = access.verify_benchmark(1000 if quick else 5000)
    url = fresh_database("enclave_bench_access")
    try:
        endpoints = access.endpoint_benchmark(url, seconds=3.0 if quick else 15.0)
    finally:
        drop_database("enclave_bench_access")
    opened, authorised = endpoints["open"], endpoints["authorised"]
    return [
        f"| access-token verification (ES256, python-jose, allow-list, cached public keys), one process "
        f"| {verified['count']:,} in {verified['seconds']:.2f} s "
        f"| **{verified['per_second']:,.0f} /s** | — |",
        f"| open no-op endpoint over HTTP, one uvicorn process, 4 client threads "
        f"| {opened['requests']:,} in {opened['seconds']:.1f} s "
        f"| **{opened['per_second']:,.0f} req/s** | — |",
        f"| authorised no-op endpoint (token verified, account loaded from PostgreSQL), same set-up "
        f"| {authorised['requests']:,} in {authorised['seconds']:.1f} s "
        f"| **{authorised['per_second']:,.0f} req/s** ({endpoints['ratio']:.0%} of the open one) | — |",
    ]


def run_consent(quick: bool) -> list[str]:
    """Batch effective status for the whole project, and decision recording over HTTP."""
    students = 3_000 if quick else 18_000
    url = fresh_database("enclave_bench_consent")
    try:
        built = consent.build_population(url, students=students)
        status = consent.status_benchmark(url, repeats=5 if quick else 20)
        decisions = consent.decision_benchmark(url, seconds=3.0 if quick else 15.0)
    finally:
        drop_database("enclave_bench_consent")
    return [
        f"| consent batch status: {status['subjects']:,} students × 6 purposes = {status['cells']:,} "
        f"statuses at one instant ({built['decisions']:,} decisions, {built['guardians']:,} guardians) "
        f"| best {status['best'] * 1000:.0f} ms, median {status['median'] * 1000:.0f} ms of "
        f"{5 if quick else 20} | **{status['median'] * 1000:.0f} ms** | < 200 ms |",
        f"| consent status cache: recompute every student's row (daily job, rule change) "
        f"| {built['cached']:,} rows in {built['refresh_seconds']:.1f} s "
        f"| **{built['cached'] / built['refresh_seconds']:,.0f} students/s** | — |",
        f"| consent decision recording over HTTP (6 purposes each: locked, checked, audited, status "
        f"refreshed), one uvicorn process, 4 client threads | {decisions['requests']:,} in "
        f"{decisions['seconds']:.1f} s | **{decisions['per_second']:,.0f} decisions/s** | — |",
    ]


def run_crypto(quick: bool) -> list[str]:
    """Decryption through the encrypted store against raw AES-GCM, and rewrap of data keys."""
    try:
        rounds = 2 if quick else 9
        dec = crypto.decrypt_benchmark(
            fresh_database("enclave_bench_crypto"), size_mib=32 if quick else 256, rounds=rounds
        )
        rew = crypto.rewrap_benchmark(
            fresh_database("enclave_bench_rewrap"), count=1_000 if quick else 10_000
        )
    finally:
        drop_database("enclave_bench_crypto")
        drop_database("enclave_bench_rewrap")
    size = f"{dec['bytes'] / 1024**2:.0f} MiB"
    return [
        f"| encrypt and store a {size} object (`put_object`: 1 MiB AES-256-GCM segments, local folder, "
        f"fsync) | {dec['put_seconds']:.2f} s | **{dec['put_mb_s']:,.0f} MB/s** | — |",
        f"| decrypt a {size} object through `open_object` ({dec['segments']:,} segments, key unwrapped, "
        f"streamed from the local folder) vs raw `AESGCM.decrypt` of the same segments in memory, "
        f"best of {rounds} | CPU {dec['store_cpu']:.3f} s vs {dec['raw_cpu']:.3f} s; wall "
        f"{dec['store_seconds']:.3f} s vs {dec['raw_seconds']:.3f} s "
        f"| **{dec['cpu_ratio']:.2f}× raw in CPU time** ({dec['store_mb_s']:,.0f} MB/s vs "
        f"{dec['raw_mb_s']:,.0f} MB/s wall-clock: {dec['ratio']:.2f}×) | ≥ 0.7× |",
        f"| rewrap {rew['count']:,} data keys to a new KEK version (key files, batches of "
        f"{rew['batch_size']}, PostgreSQL) | {rew['seconds']:.1f} s "
        f"| **{rew['per_second']:,.0f} keys/s** | — |",
    ]


def run_ingest(quick: bool) -> list[str]:
    """A questionnaire of 18,000 students ingested end to end, and read back."""
    students = 3_000 if quick else 18_000
    url = fresh_database("enclave_bench_ingest")
    try:
        result = ingest.ingest_benchmark(url, students=students, repeats=2 if quick else 4)
    finally:
        drop_database("enclave_bench_ingest")
    return [
        f"| ingestion of {result['rows']:,} rows × 13 variables (CSV: validate, find students, consent at "
        f"that instant, pseudonymise, Parquet, encrypt, publish), first upload (pseudonyms created) "
        f"| {result['first']:.2f} s | **{result['rows'] / result['first']:,.0f} rows/s** | < 2 s |",
        f"| the same, a later version (pseudonyms known) | {result['later']:.2f} s (median) "
        f"| **{result['rows'] / result['later']:,.0f} rows/s** | < 2 s |",
        f"| read the version back into Polars (decrypt + Parquet) | {result['read'] * 1000:.0f} ms | — | — |",
        *run_ingest_large(quick),
    ]


def run_ingest_large(quick: bool) -> list[str]:
    """A questionnaire of 2,000,000 students from a CSV file on disk, in a process of its own."""
    students = 100_000 if quick else 2_000_000
    url = fresh_database("enclave_bench_ingest_large")
    try:
        result = ingest.large_benchmark(url, students=students)
    finally:
        drop_database("enclave_bench_ingest_large")
    setup = result["setup"]
    return [
        f"| ingestion of {result['rows']:,} rows × 13 variables from a {result['bytes'] / 2**20:,.0f} MiB "
        f"CSV "
        f"file (`ingest_stream`, as `enclave datasets ingest` runs it: {result['parts']} encrypted parts), "
        f"in a fresh process; set-up not timed: roster of {students:,} students "
        f"{setup['roster']:.0f} s, consent cache {setup['consent']:.0f} s "
        f"| {result['seconds']:.1f} s, peak memory {result['peak_rss_mib']:,.0f} MiB "
        f"| **{result['rows'] / result['seconds']:,.0f} rows/s** | < 60 s, < 2 GB |",
    ]


SECTIONS = {
    "ledger-access": lambda quick: run_audit(quick) + run_access(quick),
    "consent": run_consent,
    "enclave-crypto": run_crypto,
    "enclave-ingest": run_ingest,
    "dp-queries": dp.report,
    "demo": demo.report,
}
OWN_TABLES = {"dp-queries", "demo"}
"""Sections whose lines carry their own table headers (only the machine line is added)."""


def main() -> None:
    """Run the benchmarks and print (and, for a full run, record) the results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes; do not rewrite the README")
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run one section and rewrite only its table")
    args = parser.parse_args()
    for name, run in SECTIONS.items():
        if args.only and name != args.only:
            continue
        header = [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, PostgreSQL on loopback.",
            "",
            "| what | measured | result | target |",
            "|---|---|---|---|",
        ]
        if name in OWN_TABLES:
            header = header[:2]
        table = "\n".join(header + run(args.quick))
        print(table)
        if not args.quick:
            start, end = f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"
            text = README.read_text(encoding="utf-8")
            text = re.sub(f"{start}.*{end}", f"{start}\n{table}\n{end}", text, flags=re.S)
            README.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
