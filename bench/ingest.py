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
    from enclave.datasets import ingestion
    from infra.db import session_scope

    world = _prepare(url, students, Path(tempfile.mkdtemp(prefix="bench-ingest-")))
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
