"""The consent core on the embedded default (SQLite): forms load, decisions record, statuses agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from access.audit.actions import Role
from access.audit.service import Actor
from consent.decisions import status_cache
from consent.decisions.models import Status
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.decisions.status import derive_student_statuses, student_statuses, teacher_statuses
from consent.forms import service as forms
from consent.identity import IdentityProtector
from enclave.components import import_wiring
from infra.db import make_engine, make_session_factory, session_scope
from infra.keys import FileKeyBackend
from infra.migrate import upgrade
from tests.support.consent import load_rules, make_guardian, make_student, make_teacher


def test_decisions_and_batch_statuses_work_on_sqlite(tmp_path):
    import_wiring()
    engine = make_engine(f"sqlite:///{tmp_path / 'enclave.db'}")
    upgrade(engine)
    protector = IdentityProtector(FileKeyBackend(tmp_path / "keys"))
    system = Actor.system()
    steward = Actor("steward-1", Role.data_steward)
    year = datetime.now(UTC).year
    with session_scope(make_session_factory(engine)) as session:
        load_rules(session)
        forms.load_demo_forms(session, system)
        form = forms.current_form(session, "ES", "es", datetime.now(UTC))
        assert form is not None
        texts = {t.audience: t.sha256 for t in form.texts}
        young = make_student(
            session, protector, country="ES", birth_year=year - 6, birth_month=12, language="es"
        )
        teen = make_student(session, protector, country="ES", birth_year=year - 16, language="es")
        guardian = make_guardian(session, protector, [young], language="es")
        teacher = make_teacher(session, protector, country="ES", language="es")
        young_id, teen_id, teacher_id = young.subject_id, teen.subject_id, teacher.subject_id
        record_decision(
            session,
            steward,
            DecisionCreate(
                subject_id=young_id,
                decided_by="guardian",
                guardian_id=guardian.guardian_id,
                form_id=form.id,
                text_sha256=texts["guardian"],
                choices={"questionnaires": "granted", "interviews": "declined"},
                channel="paper",
            ),
        )
        record_decision(
            session,
            steward,
            DecisionCreate(
                subject_id=teen_id,
                decided_by="student",
                form_id=form.id,
                text_sha256=texts["child"],
                choices={"questionnaires": "granted"},
                channel="school_session",
            ),
        )
        record_decision(
            session,
            steward,
            DecisionCreate(
                subject_id=teacher_id,
                decided_by="teacher",
                form_id=form.id,
                text_sha256=texts["adult"],
                choices={"questionnaires": "withdrawn"},
                channel="paper",
            ),
        )
    with session_scope(make_session_factory(engine)) as session:
        now = datetime.now(UTC) + timedelta(seconds=1)
        table = student_statuses(session, [young_id, teen_id], at=now)
        assert table.rows[young_id]["questionnaires"] is Status.granted
        assert table.rows[young_id]["interviews"] is Status.declined
        assert table.rows[teen_id]["questionnaires"] is Status.granted
        assert table.rows[teen_id]["interviews"] is Status.pending
        assert table.rows == derive_student_statuses(session, [young_id, teen_id], at=now).rows
        assert status_cache.refresh(session) == 2
        assert (
            teacher_statuses(session, [teacher_id], at=now).rows[teacher_id]["questionnaires"]
            is Status.withdrawn
        )
    engine.dispose()
