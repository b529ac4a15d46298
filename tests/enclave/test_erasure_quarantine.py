"""Erasure reaches the quarantine reports: a subject's bad rows, kept with their pupil reference and
school, leave every report when the subject is erased or withdraws, the old report's data key is
destroyed, and the other bad rows stay readable by the steward."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from consent.decisions.withdrawals import WithdrawalNotice
from consent.identity import IdentityField
from consent.requests import fulfilment
from consent.requests.models import SubjectKind
from consent.rosters.models import Student
from enclave.datasets.erasure import DatasetErasure
from enclave.datasets.models import DatasetVersion
from enclave.objects.models import DataKey
from enclave.objects.store import EncryptedStore, ObjectContext, ObjectDestroyed
from tests.enclave.test_erasure import old_enough, withdraw
from tests.enclave.test_erasure_everywhere import decrypt_everything
from tests.support.auth import auth_headers

DATASET = "questionnaire-wave1"
UNKNOWN_REF = "NOT-ON-ROSTER-77"


def reference(db_session, world, subject_id: str) -> str:
    student = db_session.execute(select(Student).where(Student.subject_id == subject_id)).scalar_one()
    ref: str = world["protector"].decrypt(db_session, IdentityField.student_ref, student.ref_ciphertext)
    return ref


@pytest.fixture
def quarantined(client, db_session, world, staff_factory) -> dict[str, Any]:
    """Two versions uploaded over HTTP with quarantine, each with three bad rows: the subject's (a
    category the schema does not know), another student's (a score out of range) and one whose
    reference is on no roster."""
    subject = old_enough(db_session, world)
    other = next(s for s in world["granted"] if s != subject)
    subject_ref, other_ref = reference(db_session, world, subject), reference(db_session, world, other)
    upload = world["upload"].with_columns(pl.all().cast(pl.String))
    ref = pl.col("student_ref")
    bad = upload.with_columns(
        pl.when(ref == subject_ref).then(pl.lit("robot")).otherwise(pl.col("gender")).alias("gender"),
        pl.when(ref == other_ref).then(pl.lit("9")).otherwise(pl.col("engagement")).alias("engagement"),
    )
    stranger = bad.head(1).with_columns(pl.lit(UNKNOWN_REF).alias("student_ref"))
    data = pl.concat([bad, stranger]).write_csv().encode()
    steward = auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))
    for _ in range(2):
        answer = client.post(
            f"/api/datasets/{DATASET}/versions?quarantine=true",
            files={"file": ("wave1.csv", data, "text/csv")},
            headers=steward,
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["quarantined"] == 3
    return {
        **world,
        "subject": subject,
        "subject_ref": subject_ref,
        "other_ref": other_ref,
        "steward_headers": steward,
        "client": client,
    }


def report(world: dict[str, Any], version: int) -> pl.DataFrame:
    """The version's quarantine report as the steward downloads it."""
    answer = world["client"].get(
        f"/api/datasets/{DATASET}/versions/{version}/quarantine", headers=world["steward_headers"]
    )
    assert answer.status_code == 200, answer.text
    return pl.read_csv(answer.content, infer_schema=False)


def proofs(db_session, event_id: str) -> list[dict[str, Any]]:
    db_session.commit()
    return [
        entry.details
        for entry in db_session.execute(
            select(AuditEntry)
            .where(AuditEntry.action == "enclave.quarantine_rows_erased", AuditEntry.target_id == event_id)
            .order_by(AuditEntry.seq)
        ).scalars()
    ]


def erasure_notice(db_session, world) -> WithdrawalNotice:
    """An erasure request carried out: the identity is emptied, then the withdrawal event is emitted."""
    student = db_session.execute(select(Student).where(Student.subject_id == world["subject"])).scalar_one()
    effect = fulfilment.erase(db_session, world["protector"], student, SubjectKind.student)
    assert effect.withdrawal is not None
    assert student.ref_ciphertext == b"", "the reference is gone before the enclave hears of it"
    return WithdrawalNotice.from_row(effect.withdrawal)


def test_an_erased_students_bad_rows_leave_every_quarantine_report(db_session, quarantined):
    world = quarantined
    store: EncryptedStore = world["store"]
    before = decrypt_everything(db_session, store)
    reports = [key for key in before if key.endswith("/quarantine.csv")]
    assert len(reports) == 2
    assert all(world["subject_ref"].encode() in before[key] for key in reports)
    old_keys = [
        key.id
        for key in db_session.execute(
            select(DataKey).where(DataKey.object_name == "quarantine.csv")
        ).scalars()
    ]

    notice = erasure_notice(db_session, world)
    DatasetErasure(lambda: store).handle(db_session, notice)
    db_session.expire_all()

    after = decrypt_everything(db_session, store)
    for key, plain in after.items():
        assert world["subject_ref"].encode() not in plain, f"{key} still holds the erased reference"
    assert sorted(k.rsplit("/", 1)[1] for k in after if "quarantine" in k) == ["quarantine.e1.csv"] * 2
    for key_id in old_keys:
        old = db_session.get(DataKey, key_id)
        assert old.destroyed_at is not None
        assert old.wrapped_key == ""
        assert old.kek_version is None
        with pytest.raises(ObjectDestroyed):
            store.read_object(db_session, ObjectContext(DATASET, old.dataset_version, "quarantine.csv"))
    for version in (1, 2):
        kept = report(world, version)
        assert world["subject_ref"] not in kept["student_ref"].to_list()
        assert kept.filter(pl.col("student_ref") == world["other_ref"])["column"].to_list() == ["engagement"]
        # The reference is erased, so the rows of the school that find nobody on the roster go with it.
        assert UNKNOWN_REF not in kept["student_ref"].to_list()
    recorded = proofs(db_session, notice.event_id)
    assert [(p["version"], p["rows_removed"], p["matched_by"]) for p in recorded] == [
        (1, 2, "unmatched_in_school"),
        (2, 2, "unmatched_in_school"),
    ]
    assert all(p["report_destroyed"] == "quarantine.csv" for p in recorded)
    assert all(p["report_written"] == "quarantine.e1.csv" for p in recorded)
    assert world["subject"] not in str(recorded)
    assert world["subject_ref"] not in str(recorded)

    DatasetErasure(lambda: store).handle(db_session, notice)
    db_session.expire_all()
    assert decrypt_everything(db_session, store).keys() == after.keys(), "a second delivery changes nothing"
    assert len(proofs(db_session, notice.event_id)) == 2


def test_a_withdrawal_removes_only_the_students_own_rows_from_the_reports(db_session, quarantined):
    world = quarantined
    store: EncryptedStore = world["store"]
    notice = withdraw(db_session, world, world["subject"], ["questionnaires"])
    DatasetErasure(lambda: store).handle(db_session, notice)
    db_session.expire_all()
    for plain in decrypt_everything(db_session, store).values():
        assert world["subject_ref"].encode() not in plain
    for version in (1, 2):
        kept = report(world, version)
        assert set(kept["student_ref"].to_list()) == {world["other_ref"], UNKNOWN_REF}
    recorded = proofs(db_session, notice.event_id)
    assert [(p["rows_removed"], p["matched_by"]) for p in recorded] == [(1, "reference"), (1, "reference")]


def test_a_report_left_with_no_row_is_destroyed_not_rewritten(client, db_session, world, staff_factory):
    subject = old_enough(db_session, world)
    subject_ref = reference(db_session, world, subject)
    upload = world["upload"].with_columns(pl.all().cast(pl.String))
    bad = upload.with_columns(
        pl.when(pl.col("student_ref") == subject_ref)
        .then(pl.lit("robot"))
        .otherwise(pl.col("gender"))
        .alias("gender")
    )
    steward = auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))
    answer = client.post(
        f"/api/datasets/{DATASET}/versions?quarantine=true",
        files={"file": ("wave1.csv", bad.write_csv().encode(), "text/csv")},
        headers=steward,
    )
    assert answer.json()["quarantined"] == 1, answer.text
    notice = withdraw(db_session, world, subject, ["questionnaires"])
    DatasetErasure(lambda: world["store"]).handle(db_session, notice)
    db_session.expire_all()
    version = db_session.execute(select(DatasetVersion)).scalar_one()
    assert version.quarantine_object is None
    assert version.quarantined == 1, "the count stays on the version"
    assert not [info for info in world["components"].storage.list("") if "quarantine" in info.key]
    gone = client.get(f"/api/datasets/{DATASET}/versions/1/quarantine", headers=steward)
    assert gone.status_code == 404
    [proof] = proofs(db_session, notice.event_id)
    assert proof["report_destroyed"] == "quarantine.csv"
    assert "report_written" not in proof


def test_an_erasure_stopped_before_the_old_bytes_went_is_completed_by_the_rerun(
    db_session, quarantined, monkeypatch
):
    world = quarantined
    store: EncryptedStore = world["store"]
    notice = erasure_notice(db_session, world)
    delete = type(store.storage).delete

    def fail(self: Any, key: str) -> None:
        raise OSError("the worker died here")

    monkeypatch.setattr(type(store.storage), "delete", fail)
    with pytest.raises(OSError, match="the worker died here"):
        DatasetErasure(lambda: store).handle(db_session, notice)
    monkeypatch.setattr(type(store.storage), "delete", delete)
    db_session.expire_all()
    # Version 1 committed (new report published, old key destroyed); its old bytes are still stored.
    stored = [info.key for info in store.storage.list("datasets/")]
    assert any(key.endswith("v1/quarantine.csv") for key in stored)
    first = db_session.execute(select(DatasetVersion).where(DatasetVersion.version == 1)).scalar_one()
    assert first.quarantine_object == "quarantine.e1.csv"
    second = db_session.execute(select(DatasetVersion).where(DatasetVersion.version == 2)).scalar_one()
    assert second.quarantine_object == "quarantine.csv", "the next version was not touched"

    DatasetErasure(lambda: store).handle(db_session, notice)
    db_session.expire_all()
    after = decrypt_everything(db_session, store)  # fails on any stored object without a live key
    assert all(world["subject_ref"].encode() not in plain for plain in after.values())
    assert [p["version"] for p in proofs(db_session, notice.event_id)] == [1, 2], "each report rewritten once"


def test_a_withdrawal_in_the_middle_of_a_rewrite_leaves_the_report_as_it_was(
    db_session, quarantined, monkeypatch
):
    world = quarantined
    store: EncryptedStore = world["store"]
    notice = withdraw(db_session, world, world["subject"], ["questionnaires"])
    put = EncryptedStore.put_object

    def put_then_fail(self: EncryptedStore, *args: Any, **kwargs: Any) -> Any:
        put(self, *args, **kwargs)
        raise OSError("the worker died here")

    monkeypatch.setattr(EncryptedStore, "put_object", put_then_fail)
    with pytest.raises(OSError, match="the worker died here"):
        DatasetErasure(lambda: store).handle(db_session, notice)
    monkeypatch.setattr(EncryptedStore, "put_object", put)
    db_session.expire_all()
    first = db_session.execute(select(DatasetVersion).where(DatasetVersion.version == 1)).scalar_one()
    assert first.quarantine_object == "quarantine.csv"
    assert world["subject_ref"] in report(world, 1)["student_ref"].to_list(), "rolled back: still readable"
    assert proofs(db_session, notice.event_id) == []

    DatasetErasure(lambda: store).handle(db_session, notice)
    db_session.expire_all()
    for version in (1, 2):
        assert world["subject_ref"] not in report(world, version)["student_ref"].to_list()
    assert all(world["subject_ref"].encode() not in p for p in decrypt_everything(db_session, store).values())
