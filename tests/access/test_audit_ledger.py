"""The audit ledger: entries commit with their change, every attempt leaves a trace, and any
tampering is found and named by its first bad sequence number."""

from __future__ import annotations

import base64
import itertools
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from access.audit import canonical
from access.audit.actions import Details, Identifier, Outcome, Role, register_action
from access.audit.exceptions import AuditDetailsRejected, UnknownAction
from access.audit.merkle import verify_consistency, verify_inclusion
from access.audit.models import AuditEntry, AuditPending
from access.audit.service import (
    SIGNING_KEY,
    Actor,
    SignedCheckpoint,
    checkpoint_payload,
    create_checkpoint,
    prove_consistency,
    prove_inclusion,
    record,
    record_denied,
    seal,
    verify_ledger,
    write_queued,
)
from infra.db import session_scope
from infra.keys import FileKeyBackend


class DecisionDetails(Details):
    purpose: Identifier
    form_sha256: str | None = None


TEST_ACTION = register_action("test.decision_recorded", DecisionDetails)
STEWARD = Actor("acct-0001", Role.data_steward)


@pytest.fixture
def keys(tmp_path):
    return FileKeyBackend(tmp_path / "keys")


def _fill(session, count: int) -> None:
    for i in range(count):
        record(session, STEWARD, TEST_ACTION, target_type="subject", target_id=f"subj-{i:04d}",
               details={"purpose": "questionnaires"})  # fmt: skip
    # Entries are chained when their transaction commits; the test's transaction never does.
    seal(session)


def _verify(db_connection, keys, saved=None):
    return verify_ledger(db_connection, keys.public_keys(SIGNING_KEY), saved)


def _tamper(db_connection, statement: str, **params) -> None:
    db_connection.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only"))
    db_connection.execute(text(statement), params)
    db_connection.execute(text("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only"))


def test_entries_form_one_gap_free_chain_that_verifies(db_session, db_connection, keys):
    _fill(db_session, 25)
    entries = db_session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [e.seq for e in entries] == list(range(1, 26))
    assert entries[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    report = _verify(db_connection, keys)
    assert report.ok, report.problems
    assert report.entries == 25


def test_details_that_could_hold_personal_data_are_refused(db_session):
    with pytest.raises(AuditDetailsRejected):
        record(db_session, STEWARD, TEST_ACTION, details={"purpose": "questionnaires", "email": "a@b.org"})
    with pytest.raises(AuditDetailsRejected):
        record(db_session, STEWARD, TEST_ACTION, details={"purpose": "Ana Pérez"})
    with pytest.raises(AuditDetailsRejected):
        record(db_session, STEWARD, TEST_ACTION, details={"purpose": "ana@example.org"})
    with pytest.raises(UnknownAction):
        record(db_session, STEWARD, "test.never_registered")


def test_database_refuses_update_and_delete_of_entries(db_session, db_connection):
    _fill(db_session, 2)
    with pytest.raises(DBAPIError, match="append-only"), db_connection.begin_nested():
        db_connection.execute(text("UPDATE audit_entry SET outcome = 'denied' WHERE seq = 1"))
    with pytest.raises(DBAPIError, match="append-only"), db_connection.begin_nested():
        db_connection.execute(text("DELETE FROM audit_entry WHERE seq = 2"))
    with pytest.raises(DBAPIError, match="append-only"), db_connection.begin_nested():
        db_connection.execute(text("TRUNCATE audit_entry"))


def test_rolled_back_change_leaves_no_entry_but_its_failed_trace(session_factory, db_session):
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        record(session, STEWARD, TEST_ACTION, target_type="subject", target_id="subj-9",
               details={"purpose": "questionnaires"})  # fmt: skip
        raise RuntimeError("the change failed after it was recorded")
    entries = db_session.scalars(select(AuditEntry)).all()
    assert [(e.action, e.outcome, e.target_id) for e in entries] == [(TEST_ACTION, "failed", "subj-9")]
    assert entries[0].details == {"error": "rolled_back"}
    assert entries[0].seq == 1


def test_denied_attempt_is_recorded_even_when_the_request_rolls_back(session_factory, db_session):
    with pytest.raises(PermissionError), session_scope(session_factory) as session:
        record_denied(session, Actor("acct-0002", Role.researcher), TEST_ACTION, error="not_in_project")
        raise PermissionError
    (entry,) = db_session.scalars(select(AuditEntry)).all()
    assert (entry.outcome, entry.actor_id, entry.details) == (
        "denied",
        "acct-0002",
        {"error": "not_in_project"},
    )


def test_entries_are_queued_in_the_transaction_and_chained_right_after_it_commits(
    session_factory, db_session
):
    with session_scope(session_factory) as session:
        first = record(session, STEWARD, TEST_ACTION, details={"purpose": "interviews"})
        second = record(session, STEWARD, TEST_ACTION, details={"purpose": "questionnaires"})
        assert session.scalars(select(AuditEntry)).all() == []
    assert first.occurred_at <= second.occurred_at
    entries = db_session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [(e.seq, e.details["purpose"]) for e in entries] == [(1, "interviews"), (2, "questionnaires")]
    assert db_session.scalar(select(func.count()).select_from(AuditPending)) == 0


def test_pending_entries_cannot_be_altered_before_they_are_sealed(db_session, db_connection):
    record(db_session, STEWARD, TEST_ACTION, details={"purpose": "interviews"})
    write_queued(db_session)
    assert db_session.scalar(select(func.count()).select_from(AuditPending)) == 1
    with pytest.raises(DBAPIError, match="append-only"), db_connection.begin_nested():
        db_connection.execute(text("UPDATE audit_pending SET actor_id = 'someone-else'"))


def test_committed_change_keeps_its_ok_entry_only(session_factory, db_session):
    with session_scope(session_factory) as session:
        record(session, STEWARD, TEST_ACTION, details={"purpose": "interviews"})
    outcomes = db_session.scalars(select(AuditEntry.outcome)).all()
    assert outcomes == [Outcome.ok.value]


def test_modified_entry_is_named(db_session, db_connection, keys):
    _fill(db_session, 30)
    _tamper(db_connection, "UPDATE audit_entry SET target_id = 'subj-9999' WHERE seq = 17")
    report = _verify(db_connection, keys)
    assert not report.ok
    assert report.first_bad_seq == 17


def test_modified_entry_with_recomputed_hash_is_named(db_session, db_connection, keys):
    _fill(db_session, 30)
    row = db_session.get(AuditEntry, 12)
    assert row is not None
    document = canonical.entry_document(
        seq=12, occurred_at=row.occurred_at, actor_id=row.actor_id, actor_role=row.actor_role,
        action=row.action, target_type=row.target_type, target_id="subj-forged", outcome=row.outcome,
        request_id=row.request_id, project_id=row.project_id, details=row.details, prev_hash=row.prev_hash,
    )  # fmt: skip
    _tamper(db_connection, "UPDATE audit_entry SET target_id = 'subj-forged', entry_hash = :h WHERE seq = 12",
            h=canonical.entry_hash(document))  # fmt: skip
    db_session.expire_all()
    assert _verify(db_connection, keys).first_bad_seq == 12


def test_deleted_entry_is_named(db_session, db_connection, keys):
    _fill(db_session, 30)
    _tamper(db_connection, "DELETE FROM audit_entry WHERE seq = 9")
    report = _verify(db_connection, keys)
    assert report.first_bad_seq == 9
    assert report.problems[0].kind == "missing_entries"


def test_inserted_entry_is_named(db_session, db_connection, keys):
    _fill(db_session, 30)
    # Make room at 21 by shifting the tail up (highest first, so keys never collide), then insert a forgery.
    _tamper(db_connection, "UPDATE audit_entry SET seq = -seq - 1 WHERE seq >= 21")
    _tamper(db_connection, "UPDATE audit_entry SET seq = -seq WHERE seq < 0")
    _tamper(
        db_connection,
        "INSERT INTO audit_entry SELECT 21, occurred_at, actor_id, actor_role, action, target_type, "
        "'subj-inserted', outcome, request_id, project_id, details, prev_hash, entry_hash "
        "FROM audit_entry WHERE seq = 20",
    )
    assert _verify(db_connection, keys).first_bad_seq == 21


def test_reordered_entries_are_named(db_session, db_connection, keys):
    _fill(db_session, 30)
    _tamper(db_connection, "UPDATE audit_entry SET seq = -1 WHERE seq = 14")
    _tamper(db_connection, "UPDATE audit_entry SET seq = 14 WHERE seq = 15")
    _tamper(db_connection, "UPDATE audit_entry SET seq = 15 WHERE seq = -1")
    assert _verify(db_connection, keys).first_bad_seq == 14


def test_truncated_tail_is_found_against_a_saved_checkpoint(db_session, db_connection, keys):
    _fill(db_session, 30)
    saved = SignedCheckpoint.from_row(create_checkpoint(db_session, keys))
    saved = SignedCheckpoint.from_json(json.loads(json.dumps(saved.to_json())))
    assert _verify(db_connection, keys, saved).ok
    last = db_session.scalar(select(func.max(AuditEntry.seq)))
    _tamper(db_connection, "DELETE FROM audit_entry WHERE seq > 25")
    _tamper(db_connection, "DELETE FROM audit_checkpoint")
    db_connection.execute(
        text(
            "UPDATE audit_head SET seq = 25, entry_hash = (SELECT entry_hash FROM audit_entry WHERE seq = 25)"
        )
    )
    assert last is not None
    assert last > 25
    without_saved = _verify(db_connection, keys)
    assert without_saved.ok, "the remaining chain is internally consistent"
    report = _verify(db_connection, keys, saved)
    assert not report.ok
    assert report.first_bad_seq == 26


def test_forged_checkpoint_is_detected(db_session, db_connection, keys):
    _fill(db_session, 10)
    checkpoint = create_checkpoint(db_session, keys)
    forged = Ed25519PrivateKey.generate().sign(checkpoint_payload(10, "ab" * 32, checkpoint.signed_at))
    db_connection.execute(
        text("UPDATE audit_checkpoint SET root_hash = :r, signature = :s WHERE id = :i"),
        {"r": "ab" * 32, "s": base64.b64encode(forged).decode(), "i": checkpoint.id},
    )
    report = _verify(db_connection, keys)
    kinds = {p.kind for p in report.problems}
    assert "checkpoint_signature" in kinds
    assert report.first_bad_seq is not None


def test_rewritten_history_fails_against_signed_checkpoints(db_session, db_connection, keys):
    _fill(db_session, 20)
    create_checkpoint(db_session, keys)
    db_session.commit()
    # An attacker with database access but no key rewrites entry 5 and re-chains everything after it.
    rows = db_session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    prev = rows[3].entry_hash
    for row in rows[4:]:
        document = canonical.entry_document(
            seq=row.seq, occurred_at=row.occurred_at, actor_id=row.actor_id, actor_role=row.actor_role,
            action=row.action, target_type=row.target_type,
            target_id="subj-forged" if row.seq == 5 else row.target_id, outcome=row.outcome,
            request_id=row.request_id, project_id=row.project_id, details=row.details, prev_hash=prev,
        )  # fmt: skip
        digest = canonical.entry_hash(document)
        _tamper(
            db_connection,
            "UPDATE audit_entry SET target_id = :t, prev_hash = :p, entry_hash = :h WHERE seq = :s",
            t=document["target_id"],
            p=prev,
            h=digest,
            s=row.seq,
        )
        prev = digest
    db_connection.execute(text("UPDATE audit_head SET entry_hash = :h"), {"h": prev})
    report = _verify(db_connection, keys)
    assert not report.ok
    assert {p.kind for p in report.problems} == {"checkpoint_root_mismatch"}
    assert report.first_bad_seq == 1


def test_inclusion_and_consistency_proofs_verify_against_checkpoints(db_session, db_connection, keys):
    _fill(db_session, 13)
    first = create_checkpoint(db_session, keys)
    _fill(db_session, 20)
    second = create_checkpoint(db_session, keys)
    assert (first.tree_size, second.tree_size) == (13, 34)
    entry = db_session.get(AuditEntry, 7)
    assert entry is not None
    proof = [bytes.fromhex(h) for h in prove_inclusion(db_connection, 7, second.tree_size)]
    leaf = canonical.entry_leaf(entry.entry_hash)
    assert verify_inclusion(6, second.tree_size, leaf, proof, bytes.fromhex(second.root_hash))
    consistency = [bytes.fromhex(h) for h in prove_consistency(db_connection, 13, 34)]
    assert verify_consistency(
        13, 34, consistency, bytes.fromhex(first.root_hash), bytes.fromhex(second.root_hash)
    )
    assert _verify(db_connection, keys).ok


# --- retention ---------------------------------------------------------------------------------


@pytest.fixture
def three_years_ago(monkeypatch):
    """Record entries as if it were three years ago until the returned callable is called."""
    from datetime import UTC, datetime, timedelta

    from access.audit import recording

    past = datetime.now(UTC) - timedelta(days=3 * 365)
    monkeypatch.setattr(recording, "clock", lambda: past)
    return lambda: monkeypatch.setattr(recording, "clock", lambda: datetime.now(UTC))


def _old_and_new(db_session, three_years_ago, old: int = 12, new: int = 5) -> None:
    _fill(db_session, old)
    three_years_ago()
    for i in range(new):
        record(db_session, STEWARD, TEST_ACTION, target_id=f"recent-{i}", details={"purpose": "interviews"})
    seal(db_session)


def test_retention_empties_old_entries_but_keeps_their_hashes_and_the_ledger_verifies(
    db_session, db_connection, keys, three_years_ago
):
    from access.audit.service import apply_retention

    _old_and_new(db_session, three_years_ago)
    hashes_before = db_session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq)
    ).all()
    result = apply_retention(db_session, keys, retention_days=2 * 365)
    seal(db_session)
    assert (result.pruned, result.first_seq, result.last_seq) == (12, 1, 12)
    rows = db_session.execute(
        select(AuditEntry.seq, AuditEntry.target_id, AuditEntry.pruned_at).order_by(AuditEntry.seq)
    ).all()
    assert all(target is None and pruned is not None for seq, target, pruned in rows if seq <= 12)
    assert [target for seq, target, _ in rows if 13 <= seq <= 17] == [f"recent-{i}" for i in range(5)]
    hashes_after = db_session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq)
    ).all()
    assert hashes_after[: len(hashes_before)] == hashes_before
    report = _verify(db_connection, keys)
    assert report.ok, report.problems
    assert report.pruned == 12
    # Running again empties nothing more.
    assert apply_retention(db_session, keys, retention_days=2 * 365).pruned == 0


def test_inclusion_proofs_still_hold_for_emptied_and_kept_entries(
    db_session, db_connection, keys, three_years_ago
):
    from access.audit.service import apply_retention

    _old_and_new(db_session, three_years_ago)
    apply_retention(db_session, keys, retention_days=2 * 365)
    checkpoint = SignedCheckpoint.from_row(create_checkpoint(db_session, keys))
    leaves = {
        seq: canonical.entry_leaf(h)
        for seq, h in db_session.execute(select(AuditEntry.seq, AuditEntry.entry_hash))
    }
    for seq in (1, 12, 13, checkpoint.tree_size):
        proof = [bytes.fromhex(h) for h in prove_inclusion(db_connection, seq, checkpoint.tree_size)]
        assert verify_inclusion(
            seq - 1, checkpoint.tree_size, leaves[seq], proof, bytes.fromhex(checkpoint.root_hash)
        )


def test_database_refuses_to_empty_a_young_entry_or_to_change_the_hash_of_an_old_one(
    db_session, db_connection, three_years_ago
):
    _old_and_new(db_session, three_years_ago, old=2, new=2)
    blank = (
        "UPDATE audit_entry SET pruned_at = now(), actor_id = '', actor_role = '', action = '', "
        "outcome = '', target_type = NULL, target_id = NULL, request_id = NULL, project_id = NULL, "
        "details = '{}'"
    )
    with pytest.raises(DBAPIError, match="append-only"), db_connection.begin_nested():
        db_connection.execute(text(f"{blank} WHERE seq = 3"))
    with pytest.raises(DBAPIError, match="append-only"), db_connection.begin_nested():
        db_connection.execute(text(f"{blank}, entry_hash = repeat('0', 64) WHERE seq = 1"))
    with db_connection.begin_nested():
        db_connection.execute(text(f"{blank} WHERE seq = 1"))  # the one change retention may make


def test_entry_emptied_outside_a_retention_run_is_named(db_session, db_connection, keys):
    _fill(db_session, 10)
    create_checkpoint(db_session, keys)
    _tamper(
        db_connection,
        "UPDATE audit_entry SET pruned_at = now(), target_id = NULL, details = '{}' WHERE seq = 6",
    )
    report = _verify(db_connection, keys)
    assert report.first_bad_seq == 6
    assert "unexplained_pruning" in {p.kind for p in report.problems}


def test_rewritten_hash_of_an_emptied_entry_is_found_by_the_checkpoint(
    db_session, db_connection, keys, three_years_ago
):
    from access.audit.service import apply_retention

    _old_and_new(db_session, three_years_ago)
    apply_retention(db_session, keys, retention_days=2 * 365)
    _tamper(db_connection, "UPDATE audit_entry SET entry_hash = repeat('a', 64) WHERE seq = 4")
    _tamper(db_connection, "UPDATE audit_entry SET prev_hash = repeat('a', 64) WHERE seq = 5")
    report = _verify(db_connection, keys)
    assert not report.ok
    assert report.first_bad_seq is not None
    assert report.first_bad_seq <= 4
