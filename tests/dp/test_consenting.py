"""The consent filter of releases: a withdrawal is honoured by the very next call, nothing else moves."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import delete, select, text

from consent.decisions import pseudonyms, status_cache
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.forms.models import ConsentForm
from consent.rosters.models import Guardianship, Student
from dp_queries import consenting as module
from dp_queries.consenting import consenting
from enclave.datasets.frames import FrameCache, LoadedFrame
from enclave.datasets.ingestion import ingest
from tests.enclave.conftest import world as enclave_world  # noqa: F401 - the enclave's fixture
from tests.enclave.test_erasure import old_enough, withdraw

DATASET = "questionnaire-wave1"


@pytest.fixture
def loaded(db_session, enclave_world) -> LoadedFrame:  # noqa: F811
    world = enclave_world
    ingest(
        db_session,
        world["steward"],
        world["store"],
        world["protector"],
        dataset_id=DATASET,
        data=world["upload"].write_csv().encode(),
    )
    module.forget()
    return FrameCache(max_bytes=2**26).get(db_session, world["store"], DATASET)


def pseudonym_of(db_session, world, subject: str) -> str:
    return pseudonyms.pseudonymise(db_session, world["store"].keys, "letscare-main", [subject])[subject]


def test_a_withdrawal_excludes_the_subject_from_the_next_call(db_session, enclave_world, loaded):  # noqa: F811
    world = enclave_world
    first = consenting(db_session, loaded)
    assert first.excluded == 0
    assert first.frame.height == loaded.frame.height == len(world["granted"])
    subject = old_enough(db_session, world)
    pseudonym = pseudonym_of(db_session, world, subject)
    assert pseudonym in first.frame["pseudonym"].to_list()
    withdraw(db_session, world, subject, ["questionnaires"])
    after = consenting(db_session, loaded)
    assert after.excluded == 1
    assert pseudonym not in after.frame["pseudonym"].to_list()
    assert after.frame.height == first.frame.height - 1
    assert after.frame.columns == loaded.frame.columns
    assert after.digest != first.digest, "another set of subjects, another digest"


def test_nothing_changed_gives_the_same_answer_without_deriving_again(db_session, enclave_world, loaded):  # noqa: F811
    first = consenting(db_session, loaded)
    derived = module.counters.derivations
    again = consenting(db_session, loaded)
    assert module.counters.derivations == derived, "answered from what was kept"
    assert again.digest == first.digest
    assert again.frame.equals(first.frame)
    # A decision on another purpose is a write (so the statuses are derived again) but changes nothing.
    subject = old_enough(db_session, enclave_world)
    student = db_session.execute(select(Student).where(Student.subject_id == subject)).scalar_one()
    form = db_session.execute(select(ConsentForm).where(ConsentForm.country_code == "ES")).scalars().first()
    record_decision(
        db_session,
        enclave_world["steward"].actor,
        DecisionCreate(
            subject_id=student.subject_id,
            decided_by="student",
            form_id=form.id,
            text_sha256=next(t.sha256 for t in form.texts if t.audience == "child"),
            choices={"questionnaires": "granted", "interviews": "declined"},
            channel="paper",
        ),
    )
    third = consenting(db_session, loaded)
    assert module.counters.derivations == derived + 1
    assert (third.digest, third.excluded) == (first.digest, 0)


def test_a_past_instant_is_answered_as_of_then(db_session, enclave_world, loaded):  # noqa: F811
    world = enclave_world
    before = datetime.now(UTC)
    subject = old_enough(db_session, world)
    withdraw(db_session, world, subject, ["questionnaires"])
    assert consenting(db_session, loaded).excluded == 1
    assert consenting(db_session, loaded, at=before).excluded == 0
    assert consenting(db_session, loaded).excluded == 1, "the past answer did not replace the current one"


def test_answers_are_derived_again_when_time_may_change_a_status(db_session, loaded):
    consenting(db_session, loaded)
    derived = module.counters.derivations
    consenting(db_session, loaded, at=datetime.now(UTC) + module.MAX_REUSE + timedelta(minutes=1))
    assert module.counters.derivations == derived + 1


def test_a_transaction_running_during_the_derivation_is_waited_for(db_session, pg_engine, loaded):
    """Identifiers are handed out before commit: a withdrawal can commit after a later decision the
    derivation saw. A transaction that was running then and has committed since forces a new one."""
    with pg_engine.connect() as other:
        other.execute(text("SELECT pg_current_xact_id()"))  # a writing transaction, still open
        consenting(db_session, loaded)
        derived = module.counters.derivations
        consenting(db_session, loaded)
        assert module.counters.derivations == derived, "still running: nothing new can be visible"
        other.commit()
    consenting(db_session, loaded)
    assert module.counters.derivations == derived + 1


def test_a_pseudonym_the_consent_core_does_not_know_is_dropped(db_session, loaded):
    stranger = loaded.frame.head(1).with_columns(pl.lit("0" * 64).alias("pseudonym"))
    crafted = replace(loaded, version=99, frame=pl.concat([loaded.frame, stranger]))
    result = consenting(db_session, crafted)
    assert result.excluded == 1
    assert result.frame.height == loaded.frame.height
    assert "0" * 64 not in result.frame["pseudonym"].to_list()


def test_a_new_version_is_filtered_too(db_session, enclave_world, loaded):  # noqa: F811
    world = enclave_world
    first = consenting(db_session, loaded)
    ingest(
        db_session,
        world["steward"],
        world["store"],
        world["protector"],
        dataset_id=DATASET,
        data=world["upload"].write_csv().encode(),
    )
    second = FrameCache(max_bytes=2**26).get(db_session, world["store"], DATASET)
    assert second.version == 2
    assert consenting(db_session, second).digest == first.digest, "the same subjects"
    subject = old_enough(db_session, world)
    pseudonym = pseudonym_of(db_session, world, subject)
    withdraw(db_session, world, subject, ["questionnaires"])
    for version in (loaded, second):
        result = consenting(db_session, version)
        assert result.excluded == 1
        assert pseudonym not in result.frame["pseudonym"].to_list()


def test_a_roster_change_without_a_decision_is_honoured_once_the_roster_is_read_again(
    db_session,
    enclave_world,  # noqa: F811
    loaded,
    monkeypatch,
):
    """A guardian unlinked (their consent no longer counts) writes no decision and no event."""
    world = enclave_world
    first = consenting(db_session, loaded)
    young = next(
        s
        for s in db_session.execute(select(Student).where(Student.subject_id.in_(world["granted"]))).scalars()
        if datetime.now(UTC).year - s.birth_year < 13
    )
    db_session.execute(delete(Guardianship).where(Guardianship.student_id == young.id))
    status_cache.refresh(db_session, [young.id])
    monkeypatch.setattr(module, "ROSTER_RECHECK", 0.0)
    after = consenting(db_session, loaded)
    assert after.excluded == 1
    assert pseudonym_of(db_session, world, young.subject_id) not in after.frame["pseudonym"].to_list()
    assert after.digest != first.digest
