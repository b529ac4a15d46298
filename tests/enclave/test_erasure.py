"""Erasure: a withdrawn subject's rows leave every stored version, and the old objects are shredded."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import select

from access.audit.models import AuditEntry
from consent.decisions import pseudonyms
from consent.decisions.models import Withdrawal
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.decisions.withdrawals import WithdrawalNotice
from consent.forms.models import ConsentForm
from consent.rosters.models import Student
from enclave.datasets.erasure import DatasetErasure
from enclave.datasets.ingestion import ingest, load_version
from enclave.datasets.models import DatasetVersion
from enclave.objects.models import DataKey
from enclave.objects.store import ObjectContext

DATASET = "questionnaire-wave1"


@pytest.fixture
def ingested(db_session, world):
    ingest(
        db_session,
        world["steward"],
        world["store"],
        world["protector"],
        dataset_id=DATASET,
        data=world["upload"].write_csv().encode(),
    )
    return world


def withdraw(db_session, world, subject_id: str, purposes: list[str]) -> WithdrawalNotice:
    """The student withdraws (a student decision is possible from 7 in Spain, alone from 14)."""
    student = db_session.execute(select(Student).where(Student.subject_id == subject_id)).scalar_one()
    form = db_session.execute(select(ConsentForm).where(ConsentForm.country_code == "ES")).scalars().first()
    record_decision(
        db_session,
        world["steward"].actor,
        DecisionCreate(
            subject_id=student.subject_id,
            decided_by="student",
            form_id=form.id,
            text_sha256=next(t.sha256 for t in form.texts if t.audience == "child"),
            choices=dict.fromkeys(purposes, "withdrawn"),
            channel="paper",
        ),
    )
    row = db_session.execute(select(Withdrawal).where(Withdrawal.subject_id == subject_id)).scalar_one()
    return WithdrawalNotice.from_row(row)


def every_row(db_session, world) -> pl.DataFrame:
    """Decrypt every live object of the dataset, as an auditor would."""
    frames = []
    for version in db_session.execute(select(DatasetVersion)).scalars():
        for name in version.objects:
            ctx = ObjectContext(DATASET, version.version, name)
            frames.append(pl.read_parquet(world["store"].read_object(db_session, ctx)))
    return pl.concat(frames)


def old_enough(db_session, world) -> str:
    for subject in world["granted"]:
        student = db_session.execute(select(Student).where(Student.subject_id == subject)).scalar_one()
        if student.birth_year <= 2018:
            return subject
    raise AssertionError("no granted student aged 7 or more in the fixture")


def test_a_withdrawn_subject_is_in_no_stored_object_and_the_old_key_is_destroyed(db_session, ingested):
    world = ingested
    subject = old_enough(db_session, world)
    pseudonym = pseudonyms.pseudonymise(db_session, world["store"].keys, "letscare-main", [subject])[subject]
    assert pseudonym in every_row(db_session, world)["pseudonym"].to_list()
    before = len(every_row(db_session, world))
    [old_object] = db_session.execute(select(DatasetVersion)).scalar_one().objects
    notice = withdraw(db_session, world, subject, ["questionnaires"])
    DatasetErasure(lambda: world["store"]).handle(db_session, notice)
    db_session.expire_all()  # the versions were rewritten in their own transactions
    rows = every_row(db_session, world)
    assert pseudonym not in rows["pseudonym"].to_list()
    assert len(rows) == before - 1
    old_key = db_session.execute(select(DataKey).where(DataKey.object_name == old_object)).scalar_one()
    assert old_key.destroyed_at is not None
    assert not old_key.wrapped_key, "the data key of the old object is gone: no copy of it can be read"
    assert not any(info.key.endswith(f"/{old_object}") for info in world["components"].storage.list(""))
    version = db_session.execute(select(DatasetVersion)).scalar_one()
    assert version.rows == before - 1
    assert len(load_version(db_session, world["store"], DATASET)) == before - 1
    db_session.commit()
    proof = db_session.execute(
        select(AuditEntry).where(AuditEntry.action == "enclave.subject_rows_erased")
    ).scalar_one()
    assert proof.details["objects_destroyed"] == [old_object]
    assert subject not in str(proof.details)
    assert pseudonym not in str(proof.details)


def test_erasing_twice_changes_nothing_more(db_session, ingested):
    world = ingested
    subject = old_enough(db_session, world)
    notice = withdraw(db_session, world, subject, ["questionnaires"])
    consumer = DatasetErasure(lambda: world["store"])
    consumer.handle(db_session, notice)
    db_session.expire_all()
    objects = db_session.execute(select(DatasetVersion)).scalar_one().objects
    consumer.handle(db_session, notice)
    db_session.expire_all()
    assert db_session.execute(select(DatasetVersion)).scalar_one().objects == objects


def test_a_withdrawal_of_another_purpose_leaves_the_dataset_alone(db_session, ingested):
    world = ingested
    subject = old_enough(db_session, world)
    before = every_row(db_session, world)
    notice = withdraw(db_session, world, subject, ["interviews"])
    DatasetErasure(lambda: world["store"]).handle(db_session, notice)
    db_session.expire_all()
    assert every_row(db_session, world).equals(before)


def test_an_access_request_lists_the_versions_holding_the_subject_and_none_after_erasure(
    db_session, ingested
):
    from enclave.datasets.sources import EnclaveDatasets

    world = ingested
    subject = old_enough(db_session, world)
    source = EnclaveDatasets(lambda: world["store"])
    [found] = source.rows_for(db_session, subject)
    assert (found.dataset, found.rows) == (f"{DATASET} version 1", 1)
    notice = withdraw(db_session, world, subject, ["questionnaires"])
    DatasetErasure(lambda: world["store"]).handle(db_session, notice)
    db_session.expire_all()
    assert source.rows_for(db_session, subject) == []
