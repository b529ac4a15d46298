"""Consent benchmarks: batch effective status for the whole project, and decision recording over HTTP.

Status: a database with the project's size — 18,000 students in the four LET'S CARE countries aged
6 to 18, one or two guardians each, the six purposes, a guardian decision for most students, the
student's own assent or consent for most of those old enough, a few withdrawals and a second form
version rewording one purpose — then ``student_statuses`` for all 18,000 × 6 at one instant, timed
as the enclave calls it (one SQL statement, rows turned into Python statuses).

Decisions: the app served by uvicorn (one process) on PostgreSQL; a data steward signed in with MFA
enters paper decisions (six purposes each) from client threads, each one a locked, checked,
audited transaction.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp

from bench.server import serve

COUNTRIES = {"BE": "nl", "BG": "bg", "PL": "pl", "ES": "es"}
PURPOSES = [
    "questionnaires",
    "school_records",
    "interviews",
    "special_category",
    "recontact",
    "consortium_sharing",
]


def _prepare(url: str, data_dir: Path) -> Any:
    from enclave.components import import_wiring
    from infra.db import make_engine
    from infra.migrate import upgrade

    import_wiring()
    engine = make_engine(url)
    upgrade(engine)
    return engine


def _student_rows(rng: random.Random, count: int, now: datetime, cipher: bytes) -> list[dict[str, Any]]:
    rows = []
    for i in range(count):
        country = rng.choice(list(COUNTRIES))
        age = rng.randint(6, 18)
        rows.append(
            {
                "subject_id": str(uuid.uuid4()),
                "ref_index": f"{i:064x}",
                "ref_ciphertext": cipher,
                "country_code": country,
                "school_code": f"{country}-{i % 30:03d}",
                "stage": 1 + age // 5 % 4,
                "class_name": "A",
                "language": COUNTRIES[country],
                "birth_year": now.year - age - 1,
                "birth_month": rng.randint(1, 12),
            }
        )
    return rows


class _Decisions:
    """Decision rows for the bulk insert: most guardians decide, most older students too."""

    def __init__(self, rng: random.Random, forms: dict[str, Any], decided: datetime) -> None:
        self.rng, self.forms, self.decided, self.rows = rng, forms, decided, list[dict[str, Any]]()

    def add(self, student: dict[str, Any], student_id: int, guardian: int, now: datetime) -> None:
        form = self.forms[student["country_code"]]
        age = now.year - student["birth_year"] - 1
        if self.rng.random() < 0.9:
            self._event(student_id, form, by="guardian", guardian=guardian, capacity="consent", yes=0.85)
        if age >= 7 and self.rng.random() < 0.7:
            capacity = "consent" if age >= 14 else "assent"
            self._event(student_id, form, by="student", guardian=None, capacity=capacity, yes=0.9, later=1)
        if self.rng.random() < 0.03:
            self._event(
                student_id, form, by="guardian", guardian=guardian, capacity="consent", yes=0.0, later=2,
                purposes=["interviews"], refusal="withdrawn",
            )  # fmt: skip

    def _event(
        self,
        student_id: int,
        form: Any,
        *,
        by: str,
        guardian: int | None,
        capacity: str,
        yes: float,
        later: int = 0,
        purposes: list[str] = PURPOSES,
        refusal: str = "declined",
    ) -> None:
        event = str(uuid.uuid4())
        audience = "guardian" if by == "guardian" else "child"
        text = next(t.sha256 for t in form.texts if t.audience == audience)
        for purpose in purposes:
            self.rows.append(
                {
                    "event_id": event,
                    "student_id": student_id,
                    "decided_by": by,
                    "guardian_id": guardian,
                    "capacity": capacity,
                    "form_id": form.id,
                    "text_sha256": text,
                    "purpose": purpose,
                    "choice": "granted" if self.rng.random() < yes else refusal,
                    "channel": "paper",
                    "recorded_at": self.decided + timedelta(days=later),
                    "recorded_by": "bench",
                }
            )


def build_population(url: str, students: int = 18_000, seed: int = 7) -> dict[str, Any]:
    """Fill a migrated database with rules, forms, students, guardians and decisions; returns counts."""
    from sqlalchemy import insert, select

    from consent.decisions import status_cache
    from consent.decisions.models import Decision
    from consent.identity import IdentityField, IdentityProtector
    from consent.rosters.models import Guardian, Guardianship, Student
    from infra.db import make_session_factory, session_scope
    from infra.keys import FileKeyBackend
    from tests.support.consent import load_rules, make_form

    rng = random.Random(seed)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-consent-"))
    engine = _prepare(url, data_dir)
    protector = IdentityProtector(FileKeyBackend(data_dir / "keys"))
    now = datetime.now(UTC)
    with session_scope(make_session_factory(engine)) as session:
        load_rules(session)
        forms = {c: make_form(session, c, lang) for c, lang in COUNTRIES.items()}
        for country, language in COUNTRIES.items():
            make_form(
                session,
                country,
                language,
                version=2,
                reworded=["recontact"],
                published_at=now - timedelta(days=5),
            )
        cipher = protector.encrypt(session, IdentityField.guardian_name, "Benchmark Guardian")
        student_rows = _student_rows(rng, students, now, cipher)
        session.execute(insert(Student), student_rows)
        ids = dict(session.execute(select(Student.subject_id, Student.id)).all())
        guardian_rows = [
            {"guardian_id": str(uuid.uuid4()), "country_code": "ES", "name_ciphertext": cipher,
             "delivery": "school", "language": "es"}
            for _ in range(students * 2)
        ]  # fmt: skip
        session.execute(insert(Guardian), guardian_rows)
        guardian_ids = iter(session.execute(select(Guardian.id).order_by(Guardian.id)).scalars())
        links: list[dict[str, Any]] = []
        decisions = _Decisions(rng, forms, now - timedelta(days=30))
        for row in student_rows:
            mine = [next(guardian_ids) for _ in range(2 if rng.random() < 0.5 else 1)]
            links += [
                {"student_id": ids[row["subject_id"]], "guardian_id": g, "relation": "parent"} for g in mine
            ]
            decisions.add(row, ids[row["subject_id"]], mine[0], now)
        session.execute(insert(Guardianship), links)
        for start in range(0, len(decisions.rows), 20_000):
            session.execute(insert(Decision), decisions.rows[start : start + 20_000])
    started = time.perf_counter()
    with session_scope(make_session_factory(engine)) as session:
        cached = status_cache.refresh(session)
    refresh_seconds = time.perf_counter() - started
    with engine.connect() as connection:
        connection.exec_driver_sql("COMMIT")
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {
        "students": students,
        "guardians": len(guardian_rows),
        "decisions": len(decisions.rows),
        "cached": cached,
        "refresh_seconds": refresh_seconds,
    }


def status_benchmark(url: str, repeats: int = 15) -> dict[str, Any]:
    """Best and median time of one batch status call for every student and every purpose."""
    from sqlalchemy import select

    from consent.decisions.status import student_statuses
    from consent.rosters.models import Student
    from infra.db import make_engine, make_session_factory

    engine = make_engine(url)
    factory = make_session_factory(engine)
    timings = []
    with factory() as session:
        subject_ids = list(session.execute(select(Student.subject_id)).scalars())
        for _ in range(repeats):
            start = time.perf_counter()
            table = student_statuses(session, subject_ids)
            timings.append(time.perf_counter() - start)
        counts: dict[str, int] = {}
        for row in table.rows.values():
            for status in row.values():
                counts[status.value] = counts.get(status.value, 0) + 1
    engine.dispose()
    if len(table.rows) != len(subject_ids):
        raise RuntimeError("the batch did not answer for every student")
    return {
        "subjects": len(subject_ids),
        "cells": len(subject_ids) * len(table.purposes),
        "best": min(timings),
        "median": statistics.median(timings),
        "counts": counts,
    }


def decision_benchmark(url: str, seconds: float = 10.0, threads: int = 4) -> dict[str, Any]:
    """Decisions recorded per second through ``POST /api/consent/decisions``."""
    from sqlalchemy import select

    from access.accounts import mfa, service
    from access.accounts.schemas import AccountCreate
    from access.audit.actions import Role
    from access.audit.service import Actor
    from consent.rosters.models import Student
    from infra.db import make_engine, make_session_factory, session_scope
    from infra.keys import FileKeyBackend

    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        engine = make_engine(url)
        password = "bench-Steward-2026-long-enough"
        with session_scope(make_session_factory(engine)) as session:
            account = service.create_account(
                session,
                Actor.system(),
                AccountCreate(
                    email="bench.steward@example.org",
                    display_name="Benchmark steward",
                    roles=[Role.data_steward],
                    country="PL",
                    schools=[],
                    password=password,
                ),
            )
            secret, _ = mfa.enrol_now(session, FileKeyBackend(data_dir / "keys"), account)
            # Young students of the steward's country: guardians decide, no assent needed under 7.
            young = list(
                session.execute(
                    select(Student.subject_id).where(
                        Student.country_code == "PL", Student.birth_year >= datetime.now(UTC).year - 7
                    )
                ).scalars()
            )
        from consent.forms.models import ConsentForm

        with make_session_factory(engine)() as session:
            form = (
                session.execute(
                    select(ConsentForm)
                    .where(ConsentForm.country_code == "PL")
                    .order_by(ConsentForm.version.desc())
                )
                .scalars()
                .first()
            )
            assert form is not None
            form_id, text = form.id, next(t.sha256 for t in form.texts if t.audience == "guardian")
            guardian_of = _guardians(session, young)
        engine.dispose()
        with serve("enclave.app:create_app", url, data_dir) as base:
            answer = httpx.post(
                f"{base}/api/auth/token",
                data={
                    "username": "bench.steward@example.org",
                    "password": password,
                    "totp": pyotp.TOTP(secret).now(),
                },
            )
            answer.raise_for_status()
            headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            plan = {"subjects": young, "guardian_of": guardian_of, "form_id": form_id, "text": text}
            result = _hammer(base, headers, plan, seconds=seconds, threads=threads)
    return result


def _guardians(session: Any, subject_ids: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    from consent.rosters.models import Guardian, Guardianship, Student

    rows = session.execute(
        select(Student.subject_id, Guardian.guardian_id)
        .join(Guardianship, Guardianship.student_id == Student.id)
        .join(Guardian, Guardian.id == Guardianship.guardian_id)
        .where(Student.subject_id.in_(subject_ids))
    ).all()
    return dict(rows)


def _hammer(
    base: str, headers: dict[str, str], plan: dict[str, Any], *, seconds: float, threads: int
) -> dict[str, Any]:
    subjects, guardian_of = plan["subjects"], plan["guardian_of"]
    form_id, text = plan["form_id"], plan["text"]
    counts = [0] * threads
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            while time.perf_counter() < stop_at:
                subject = rng.choice(subjects)
                body = {
                    "subject_id": subject,
                    "decided_by": "guardian",
                    "guardian_id": guardian_of[subject],
                    "form_id": form_id,
                    "text_sha256": text,
                    "choices": {p: rng.choice(["granted", "declined"]) for p in PURPOSES},
                    "channel": "paper",
                }
                response = http.post("/api/consent/decisions", json=body)
                if response.status_code != 201:
                    errors.append(f"{response.status_code} {response.text[:300]}")
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
        raise RuntimeError(f"decision recording failed: {errors[0]}")
    return {"requests": sum(counts), "seconds": elapsed, "per_second": sum(counts) / elapsed}
