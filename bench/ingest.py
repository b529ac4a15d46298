"""Ingestion benchmark: a questionnaire of 18,000 students end to end, as a data steward uploads it.

Set-up (not timed): a migrated database with the shipped rules and a form; 18,000 synthetic
students of one country imported through the roster service with their guardians; every student's
consent for ``questionnaires`` recorded in bulk (guardian and student decisions as the Spanish rule
asks at each age) and their status rows cached; a declared dataset.

Timed: ``enclave.datasets.ingestion.ingest`` on the CSV — read, validate every value against the
schema, find the students by keyed hash, check consent at that instant, pseudonymise (HMAC per
subject), write Parquet, encrypt (AES-256-GCM envelope, key-file backend) and publish on local
storage — and then reading the version back into Polars.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl


def _prepare(url: str, students: int, folder: Path) -> dict[str, Any]:
    """A migrated database with a consenting roster of one country and a declared dataset (not timed)."""
    from sqlalchemy import insert, select

    from access.audit.actions import Role
    from access.principal import Principal
    from consent.decisions import ages, status_cache
    from consent.decisions.models import Decision
    from consent.identity import IdentityProtector
    from consent.rosters.importing import import_students
    from consent.rosters.importing_guardians import import_guardians
    from consent.rosters.models import Guardianship, Student
    from enclave.components import import_wiring
    from enclave.datasets import service as catalog
    from enclave.datasets.schemas import DatasetCreate
    from enclave.objects.store import EncryptedStore
    from enclave.synthetic import generate
    from infra.db import make_engine, make_session_factory, session_scope
    from infra.keys import FileKeyBackend
    from infra.migrate import upgrade
    from infra.storage.local import LocalStorage
    from tests.support.consent import load_rules, make_form

    import_wiring()
    keys = FileKeyBackend(folder / "keys")
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    data = generate(students=students * 6, schools=120, seed=9)
    roster = data.students.filter(pl.col("country") == "ES")
    steward = Principal(account_id="bench-steward", roles=frozenset({Role.data_steward}), country="ES")
    protector = IdentityProtector(keys)
    now = datetime.now(UTC)
    with session_scope(factory) as session:
        load_rules(session)
        form = make_form(session, "ES", "es")
        import_students(session, steward, protector, roster.write_csv().encode())
        codes = roster["student_ref"].to_list()
        guardians_csv = data.guardians.filter(pl.col("student_ref").is_in(codes)).write_csv().encode()
        import_guardians(session, steward, protector, guardians_csv)
        texts = {t.audience: t.sha256 for t in form.texts}
        guardians = dict(session.execute(select(Guardianship.student_id, Guardianship.guardian_id)).all())
        rows: list[dict[str, Any]] = []
        query = select(Student.id, Student.birth_year, Student.birth_month)
        for student_id, birth_year, birth_month in session.execute(query).all():
            # Every guardian grants; every student old enough to be asked agrees too (assent or consent).
            rows.append(
                _decision(form.id, student_id, now, by=("guardian", guardians[student_id], texts["guardian"]))
            )
            if ages.age_on(birth_year, birth_month, now.date()) >= 7:
                rows.append(_decision(form.id, student_id, now, by=("student", None, texts["child"])))
        session.execute(insert(Decision), rows)
    with session_scope(factory) as session:
        status_cache.refresh(session)
        catalog.create_dataset(
            session,
            steward,
            DatasetCreate.model_validate(
                {
                    "id": "questionnaire-bench",
                    "title": "Benchmark questionnaire",
                    "purpose": "questionnaires",
                    "domain": "bench",
                    "retention_until": (now + timedelta(days=365)).date().isoformat(),
                    "schema": _schema(),
                }
            ),
        )
    return {
        "engine": engine,
        "factory": factory,
        "steward": steward,
        "protector": protector,
        "store": EncryptedStore(None, keys, LocalStorage(folder / "objects")),
        "upload": data.questionnaire.filter(pl.col("country") == "ES").drop("country").write_csv().encode(),
        "students": roster.height,
    }


def ingest_benchmark(url: str, students: int = 18_000, repeats: int = 3) -> dict[str, Any]:
    """Seconds of the first ingestion (pseudonyms created), of later ones (reused), and of a read-back."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        return _ingest_benchmark(url, students, repeats, Path(folder))


def _ingest_benchmark(url: str, students: int, repeats: int, folder: Path) -> dict[str, Any]:
    from enclave.datasets import ingestion
    from infra.db import session_scope

    world = _prepare(url, students, folder)
    timings, reads = [], []
    for _ in range(repeats):
        with session_scope(world["factory"]) as session:
            started = time.perf_counter()
            report = ingestion.ingest(
                session,
                world["steward"],
                world["store"],
                world["protector"],
                dataset_id="questionnaire-bench",
                data=world["upload"],
            )
            timings.append(time.perf_counter() - started)
        with world["factory"]() as session:
            started = time.perf_counter()
            frame = ingestion.load_version(session, world["store"], "questionnaire-bench")
            reads.append(time.perf_counter() - started)
    world["engine"].dispose()
    if report.rows_stored != world["students"] or frame.height != world["students"]:
        raise RuntimeError(f"expected every student stored, got {report.rows_stored} of {world['students']}")
    return {
        "rows": report.rows_in,
        "first": timings[0],
        "later": statistics.median(timings[1:]) if len(timings) > 1 else timings[0],
        "read": min(reads),
    }


def _decision(
    form_id: int, student_id: int, now: datetime, *, by: tuple[str, int | None, str]
) -> dict[str, Any]:
    decided_by, guardian, text = by
    return {
        "event_id": str(uuid.uuid4()),
        "student_id": student_id,
        "decided_by": decided_by,
        "guardian_id": guardian,
        "capacity": "consent",
        "form_id": form_id,
        "text_sha256": text,
        "purpose": "questionnaires",
        "choice": "granted",
        "channel": "paper",
        "recorded_at": now - timedelta(days=1),
        "recorded_by": "bench",
    }


def _schema() -> dict[str, Any]:
    return {
        "subject_id_column": "student_ref",
        "school_column": "school",
        "variables": [
            {"name": "stage", "type": "integer", "min": 1, "max": 4},
            {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
            {"name": "age", "type": "integer", "min": 5, "max": 20},
            {"name": "ses_quintile", "type": "integer", "min": 1, "max": 5},
            {"name": "migrant_background", "type": "boolean", "special_category": True},
            {"name": "special_needs", "type": "boolean", "special_category": True},
            {"name": "engagement", "type": "numeric", "min": 1, "max": 5},
            {"name": "teacher_relationship", "type": "numeric", "min": 1, "max": 5},
            {"name": "belonging", "type": "numeric", "min": 1, "max": 5},
            {"name": "attendance_pct", "type": "numeric", "min": 0, "max": 100},
            {"name": "grade_average", "type": "numeric", "min": 0, "max": 10},
            {"name": "esl_risk", "type": "numeric", "min": 0, "max": 1},
            {"name": "left_school_early", "type": "boolean"},
        ],
    }


LARGE_DATASET = "questionnaire-large"


def _prepare_large(url: str, students: int, folder: Path) -> dict[str, Any]:
    """A roster of ``students`` in one country and a questionnaire CSV on disk (set-up, timed apart).

    The first 100,000 students go in through the real import (``import_students``); the rest,
    which would take the import half an hour, are written with PostgreSQL ``COPY`` with the same
    keyed hash and encryption of the reference the import uses (``_copy_students``).

    Consent: every student's status cache row is written in one statement, as the daily refresh
    would write it for students who all granted every purpose (recording millions of decisions and
    refreshing them would take hours of set-up; both are measured in the consent benchmark); the
    ingestion reads those rows exactly as in production.
    """
    from sqlalchemy import text

    from access.audit.actions import Role
    from access.principal import Principal
    from consent.decisions.models import Status
    from consent.decisions.status import STATUS_CODES, all_purposes
    from consent.identity import IdentityProtector
    from consent.rosters.importing import import_students
    from enclave.components import import_wiring
    from enclave.datasets import service as catalog
    from enclave.datasets.schemas import DatasetCreate
    from enclave.synthetic import generate
    from infra.db import make_engine, make_session_factory, session_scope
    from infra.keys import FileKeyBackend
    from infra.migrate import upgrade
    from tests.support.consent import load_rules, make_form

    import_wiring()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = generate(students=students, schools=max(120, students // 150), seed=11)
    roster = data.students.with_columns(pl.lit("ES").alias("country"))
    upload = folder / "questionnaire.csv"
    data.questionnaire.drop("country").write_csv(upload)
    timings["generate"] = time.perf_counter() - started
    del data
    keys = FileKeyBackend(folder / "keys")
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    steward = Principal(account_id="bench-steward", roles=frozenset({Role.data_steward}), country="ES")
    protector = IdentityProtector(keys)
    with session_scope(factory) as session:
        load_rules(session)
        make_form(session, "ES", "es")
    started = time.perf_counter()
    with session_scope(factory) as session:
        import_students(session, steward, protector, roster.head(IMPORT_ROWS).write_csv().encode())
    with session_scope(factory) as session:
        _copy_students(session, protector, roster.slice(IMPORT_ROWS))
    timings["roster"] = time.perf_counter() - started
    del roster
    started = time.perf_counter()
    now = datetime.now(UTC)
    with session_scope(factory) as session:
        purposes = all_purposes(session)
        session.execute(
            text(
                "INSERT INTO consent_status_cache (student_id, codes, purposes, valid_from, valid_until) "
                "SELECT id, :codes, :purposes, :start, :until FROM consent_student"
            ),
            {
                "codes": str(STATUS_CODES[Status.granted]) * len(purposes),
                "purposes": ",".join(purposes),
                "start": now,
                "until": now + timedelta(days=1),
            },
        )
        session.execute(text("ANALYZE"))
        catalog.create_dataset(
            session,
            steward,
            DatasetCreate.model_validate(
                {
                    "id": LARGE_DATASET,
                    "title": "Benchmark questionnaire (large)",
                    "purpose": "questionnaires",
                    "domain": "bench",
                    "retention_until": (now + timedelta(days=365)).date().isoformat(),
                    "schema": _schema(),
                }
            ),
        )
    timings["consent"] = time.perf_counter() - started
    engine.dispose()
    return {"upload": upload, "keys": folder / "keys", "objects": folder / "objects", "timings": timings}


IMPORT_ROWS = 100_000


def _copy_students(session: Any, protector: Any, roster: pl.DataFrame) -> None:
    """Roster rows as ``import_students`` writes them (blind index, encrypted reference), by COPY."""
    from consent.identity import IdentityField
    from consent.rosters.importing import student_ref_index

    now = datetime.now(UTC)
    columns = (
        "subject_id, ref_index, ref_ciphertext, country_code, school_code, stage, class_name, language, "
        "birth_year, birth_month, created_at, updated_at"
    )
    # The identity keys are read (in this transaction) before COPY holds the connection.
    session.connection()
    protector.encrypt(session, IdentityField.student_ref, "warm-up")
    student_ref_index(session, protector, "ES", "warm-up", "warm-up")
    cursor = session.connection().connection.cursor()
    with cursor.copy(f"COPY consent_student ({columns}) FROM STDIN") as copy:
        for ref, country, school, stage, class_name, language, year, month in roster.select(
            "student_ref", "country", "school", "stage", "class", "language", "birth_year", "birth_month"
        ).iter_rows():
            copy.write_row(
                (
                    str(uuid.uuid4()),
                    student_ref_index(session, protector, country, school, ref),
                    protector.encrypt(session, IdentityField.student_ref, ref),
                    country,
                    school,
                    stage,
                    class_name,
                    language,
                    year,
                    month,
                    now,
                    now,
                )
            )


def _ingest_file(url: str, keys: str, objects: str, upload: str) -> dict[str, Any]:
    """One ingestion of a file from disk, as ``enclave datasets ingest`` does (run in its own process)."""
    from access.audit.actions import Role
    from access.principal import Principal
    from consent.identity import IdentityProtector
    from enclave.components import import_wiring
    from enclave.datasets import ingestion
    from enclave.objects.store import EncryptedStore
    from infra.db import make_engine, make_session_factory, session_scope
    from infra.keys import FileKeyBackend
    from infra.storage.local import LocalStorage

    import_wiring()
    engine = make_engine(url)
    factory = make_session_factory(engine)
    store = EncryptedStore(None, FileKeyBackend(Path(keys)), LocalStorage(Path(objects)))
    steward = Principal(account_id="bench-steward", roles=frozenset({Role.data_steward}), country="ES")
    started = time.perf_counter()
    with session_scope(factory) as session:
        report = ingestion.ingest_stream(
            session,
            steward,
            store,
            IdentityProtector(store.keys),
            dataset_id=LARGE_DATASET,
            path=Path(upload),
        )
    seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "seconds": seconds,
        "rows": report.rows_in,
        "stored": report.rows_stored,
        "parts": len(report.objects),
        "peak_rss_mib": _peak_rss() / 2**20,
    }


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM: not inherited across exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def large_benchmark(url: str, students: int = 2_000_000) -> dict[str, Any]:
    """Set-up (timed apart), then one ingestion of the whole file in a fresh process (wall time, peak RSS).

    The file, keys and encrypted parts (some 250 MB for 2,000,000 rows) are removed after.
    """
    with tempfile.TemporaryDirectory(prefix="bench-ingest-large-") as folder:
        return _large_benchmark(url, students, Path(folder))


def _large_benchmark(url: str, students: int, folder: Path) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    world = _prepare_large(url, students, folder)
    size = world["upload"].stat().st_size
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ingest",
            url,
            str(world["keys"]),
            str(world["objects"]),
            str(world["upload"]),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    if result["stored"] != students:
        raise RuntimeError(f"expected every student stored, got {result['stored']} of {students}")
    return {**result, "bytes": size, "setup": world["timings"]}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(_ingest_file(*sys.argv[1:5])))
