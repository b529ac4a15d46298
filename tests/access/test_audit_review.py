"""Audit review API: reviewers filter, page, export with proofs, verify and sign off the ledger,
and every read of the trail leaves its own entry."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from access.audit import canonical, merkle
from access.audit.actions import (
    AUDIT_EXPORTED,
    AUDIT_READ,
    AUDIT_VERIFIED,
    Details,
    Identifier,
    Outcome,
    Role,
)
from access.audit.actions import register_action as register
from access.audit.models import AuditEntry, AuditSignoff
from access.audit.review import AUDIT_RANGE_SIGNED_OFF
from access.audit.review_export import ProofTree
from access.audit.service import (
    SIGNING_KEY,
    Actor,
    SignedCheckpoint,
    checkpoint_signature_valid,
    record,
)
from access.dependencies import get_principal
from access.principal import Principal
from infra.db import session_scope


class ReviewTestDetails(Details):
    purpose: Identifier


ACTION = register("test.review_decision", ReviewTestDetails)
OTHER_ACTION = register("test.review_upload", ReviewTestDetails)

DPO = Principal("acct-dpo-0001", frozenset({Role.dpo}))
LEGAL = Principal("acct-legal-0001", frozenset({Role.legal_reviewer}))
RESEARCHER = Principal("acct-res-0001", frozenset({Role.researcher}))
STEWARD = Actor("acct-steward-1", Role.data_steward)
RESEARCHER_ACTOR = Actor("acct-res-0001", Role.researcher)


@pytest.fixture
def act_as(client):
    """Make the client's requests come from a given principal."""

    def use(principal: Principal | None) -> None:
        if principal is None:
            client.app.dependency_overrides.pop(get_principal, None)
        else:
            client.app.dependency_overrides[get_principal] = lambda: principal

    yield use
    client.app.dependency_overrides.clear()


@pytest.fixture
def seeded(session_factory) -> int:
    """Twenty entries of varied actors, actions, targets, projects and outcomes; returns the count."""
    with session_scope(session_factory) as session:
        for i in range(20):
            actor = STEWARD if i % 2 == 0 else RESEARCHER_ACTOR
            action = ACTION if i % 4 < 2 else OTHER_ACTION
            outcome = Outcome.ok if i % 5 else Outcome.denied
            details = {"purpose": "questionnaires"} if outcome is Outcome.ok else {"error": "not_allowed"}
            record(
                session,
                actor,
                action,
                target_type="subject",
                target_id=f"subj-{i % 3}",
                project_id="proj-a" if i < 10 else "proj-b",
                outcome=outcome,
                details=details,
            )
    return 20


def _seqs(body) -> list[int]:
    return [e["seq"] for e in body["entries"]]


def _reads(db_session, action: str = AUDIT_READ) -> list[AuditEntry]:
    db_session.expire_all()
    return list(db_session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor_id": "acct-res-0001"}, [i + 1 for i in range(20) if i % 2]),
        ({"role": "data_steward"}, [i + 1 for i in range(20) if i % 2 == 0]),
        ({"action": OTHER_ACTION}, [i + 1 for i in range(20) if i % 4 >= 2]),
        ({"target_id": "subj-1"}, [i + 1 for i in range(20) if i % 3 == 1]),
        ({"project_id": "proj-b"}, list(range(11, 21))),
        ({"outcome": "denied"}, [1, 6, 11, 16]),
        ({"first_seq": "5", "last_seq": "7"}, [5, 6, 7]),
        ({"role": "researcher", "project_id": "proj-a", "outcome": "ok"}, [2, 4, 8, 10]),
    ],
)
def test_each_filter_narrows_the_entries(client, act_as, seeded, query, expected):
    act_as(LEGAL)
    response = client.get("/api/audit/entries", params={**query, "limit": 500})
    assert response.status_code == 200, response.text
    assert _seqs(response.json()) == expected


def test_time_range_includes_from_and_excludes_to(client, act_as, seeded, db_session):
    act_as(DPO)
    times = {e.seq: e.occurred_at for e in db_session.scalars(select(AuditEntry))}
    start, end = times[3], times[9]
    response = client.get("/api/audit/entries", params={"from": start.isoformat(), "to": end.isoformat()})
    assert response.status_code == 200, response.text
    assert _seqs(response.json()) == list(range(3, 9))
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert client.get("/api/audit/entries", params={"from": later}).json()["entries"] == []


def test_pagination_is_a_stable_complete_snapshot(client, act_as, seeded):
    act_as(DPO)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 6, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/audit/entries", params=params).json()
        seen += _seqs(body)
        pages += 1
        assert body["ledger_size"] == seeded
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Each page's own audit.read entry is appended meanwhile but never shifts or extends the snapshot.
    assert seen == list(range(1, seeded + 1))
    assert pages == 4


def test_every_read_is_recorded_with_its_count_and_range(client, act_as, seeded, db_session):
    act_as(LEGAL)
    client.get("/api/audit/entries", params={"project_id": "proj-b", "limit": 3})
    (read,) = _reads(db_session)
    assert (read.actor_id, read.actor_role, read.outcome) == ("acct-legal-0001", "legal_reviewer", "ok")
    assert read.details == {"entries": 3, "first_seq": 11, "last_seq": 13}


def test_json_export_carries_proofs_that_verify_against_its_signed_checkpoint(
    client, act_as, seeded, components, db_session
):
    act_as(LEGAL)
    response = client.get("/api/audit/export", params={"format": "json", "action": ACTION})
    assert response.status_code == 200, response.text
    assert "attachment" in response.headers["content-disposition"]
    document = response.json()
    checkpoint = SignedCheckpoint.from_json(document["checkpoint"])
    assert checkpoint_signature_valid(checkpoint, components.keys.public_keys(SIGNING_KEY))
    assert checkpoint.tree_size >= seeded
    entries = document["entries"]
    assert [e["seq"] for e in entries] == [i + 1 for i in range(20) if i % 4 < 2]
    assert document["count"] == len(entries)
    root = bytes.fromhex(checkpoint.root_hash)
    for entry in entries:
        assert entry["pruned_at"] is None
        added = {"entry_hash", "pruned_at", "leaf_index", "inclusion_proof"}
        hashed = {k: v for k, v in entry.items() if k not in added}
        assert canonical.entry_hash(hashed) == entry["entry_hash"]
        proof = [bytes.fromhex(p) for p in entry["inclusion_proof"]]
        leaf = canonical.entry_leaf(entry["entry_hash"])
        assert merkle.verify_inclusion(entry["leaf_index"], checkpoint.tree_size, leaf, proof, root)
    (exported,) = _reads(db_session, AUDIT_EXPORTED)
    assert exported.details == {"entries": len(entries), "first_seq": 1, "last_seq": 18}


def test_csv_export_parses_and_cannot_run_formulas_in_a_spreadsheet(
    client, act_as, seeded, session_factory, components
):
    with session_scope(session_factory) as session:
        record(
            session,
            STEWARD,
            ACTION,
            target_type="subject",
            target_id="=HYPERLINK(1)",
            request_id="@SUM(A1:A9)",
            details={"purpose": "questionnaires"},
        )
    act_as(DPO)
    response = client.get("/api/audit/export", params={"format": "csv", "first_seq": "15"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["seq"]) for r in rows] == list(range(15, 22))
    hostile = rows[-1]
    assert hostile["target_id"] == "'=HYPERLINK(1)"
    assert hostile["request_id"] == "'@SUM(A1:A9)"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))
    root = bytes.fromhex(rows[0]["checkpoint_root_hash"])
    size = int(rows[0]["checkpoint_tree_size"])
    # A cell the export protected starts with one added quote (a base64 signature may start with
    # "+"): a reader removes it to get the stored value back.
    checkpoint = SignedCheckpoint.from_json(
        {
            k.removeprefix("checkpoint_"): v.removeprefix("'")
            for k, v in rows[0].items()
            if k.startswith("checkpoint_")
        }
    )
    assert checkpoint_signature_valid(checkpoint, components.keys.public_keys(SIGNING_KEY))
    for row in rows:
        proof = [bytes.fromhex(p) for p in row["inclusion_proof"].split()]
        leaf = canonical.entry_leaf(row["entry_hash"])
        assert merkle.verify_inclusion(int(row["leaf_index"]), size, leaf, proof, root)
        assert json.loads(row["details"])


def test_sign_off_stores_the_range_and_records_it_without_the_comment(
    client, act_as, seeded, db_session, components
):
    act_as(LEGAL)
    response = client.post(
        "/api/audit/signoffs", json={"first_seq": 3, "last_seq": 12, "comment": "Reviewed Q3: nothing odd."}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["first_seq"], body["last_seq"], body["reviewer_id"]) == (3, 12, "acct-legal-0001")
    assert body["tree_size"] >= 12
    row = db_session.get(AuditSignoff, body["id"])
    assert row is not None
    assert row.comment == "Reviewed Q3: nothing odd."
    (entry,) = _reads(db_session, AUDIT_RANGE_SIGNED_OFF)
    assert entry.details == {
        "first_seq": 3,
        "last_seq": 12,
        "tree_size": body["tree_size"],
        "root_hash": body["root_hash"],
    }
    assert entry.target_id == str(body["id"])
    # The root the sign-off names is a signed checkpoint's root.
    latest = client.get("/api/audit/checkpoints/latest").json()
    assert (latest["tree_size"], latest["root_hash"]) == (body["tree_size"], body["root_hash"])
    listed = client.get("/api/audit/signoffs").json()
    assert [s["id"] for s in listed] == [body["id"]]


def test_verify_reports_an_intact_ledger_and_is_recorded(client, act_as, seeded, db_session):
    act_as(LEGAL)
    body = client.get("/api/audit/verify").json()
    assert body["ok"] is True, body
    assert (body["entries"], body["first_bad_seq"], body["problems"]) == (seeded, None, [])
    (verified,) = _reads(db_session, AUDIT_VERIFIED)
    assert verified.details == {"entries": seeded, "ok": True}


def test_saved_checkpoint_proves_the_ledger_was_only_appended_to(client, act_as, seeded, session_factory):
    act_as(DPO)
    assert client.post("/api/audit/checkpoints").status_code == 201
    saved = client.get("/api/audit/checkpoints/latest").json()
    with session_scope(session_factory) as session:
        record(session, STEWARD, ACTION, details={"purpose": "interviews"})
    act_as(LEGAL)
    body = client.post("/api/audit/verify", json=saved).json()
    assert body["ok"] is True, body
    consistency = body["consistency"]
    assert consistency["ok"] is True
    assert consistency["from_size"] == saved["tree_size"] < consistency["to_size"]

    forged = {**saved, "root_hash": "ab" * 32}
    body = client.post("/api/audit/verify", json=forged).json()
    assert body["ok"] is False
    assert {p["kind"] for p in body["problems"]} >= {"saved_checkpoint_signature"}


def test_legal_reviewer_reads_but_only_the_dpo_signs_checkpoints(client, act_as, seeded):
    act_as(LEGAL)
    assert client.get("/api/audit/entries").status_code == 200
    assert client.post("/api/audit/checkpoints").status_code == 403
    act_as(DPO)
    assert client.post("/api/audit/checkpoints").status_code == 201


def test_other_roles_and_anonymous_callers_are_refused(client, act_as, seeded):
    act_as(RESEARCHER)
    for path in ("/api/audit/entries", "/api/audit/export", "/api/audit/verify", "/api/audit/signoffs"):
        assert client.get(path).status_code == 403, path
    act_as(None)
    assert client.get("/api/audit/entries").status_code == 401


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/audit/entries", {"from": "2026-02-01", "to": "2026-01-01"}, 400),
        ("/api/audit/entries", {"from": "yesterday"}, 400),
        ("/api/audit/entries", {"cursor": "not-a-cursor"}, 400),
        ("/api/audit/entries", {"limit": "0"}, 422),
        ("/api/audit/entries", {"limit": "501"}, 422),
        ("/api/audit/entries", {"role": "pirate"}, 400),
        ("/api/audit/entries", {"first_seq": "9", "last_seq": "3"}, 400),
        ("/api/audit/entries", {"first_seq": "-3"}, 400),
        ("/api/audit/export", {"format": "xlsx"}, 422),
        ("/api/audit/export", {"format": "csv", "to": "2026-01-01", "from": "2026-03-01"}, 400),
    ],
)
@pytest.mark.usefixtures("seeded")
def test_bad_input_is_a_problem_document_not_an_error(client, act_as, path, params, status):
    act_as(DPO)
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_a_cursor_only_continues_the_filters_it_was_issued_for(client, act_as, seeded):
    act_as(DPO)
    cursor = client.get("/api/audit/entries", params={"limit": 2, "role": "researcher"}).json()["next_cursor"]
    assert cursor
    response = client.get("/api/audit/entries", params={"cursor": cursor, "role": "data_steward"})
    assert response.status_code == 400
    assert "other filters" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"first_seq": 5, "last_seq": 999}, 400),
        ({"first_seq": 9, "last_seq": 3}, 400),
        ({"first_seq": 0, "last_seq": 3}, 422),
        ({"first_seq": 1, "last_seq": 3, "comment": "x" * 2001}, 422),
        ({"first_seq": "one", "last_seq": 3}, 422),
    ],
)
@pytest.mark.usefixtures("seeded")
def test_bad_sign_off_ranges_are_refused(client, act_as, db_session, body, status):
    act_as(DPO)
    response = client.post("/api/audit/signoffs", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert db_session.scalars(select(AuditSignoff)).all() == []


def test_malformed_saved_checkpoint_is_a_bad_request(client, act_as, seeded):
    act_as(LEGAL)
    response = client.post("/api/audit/verify", json={"tree_size": 3})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_latest_checkpoint_is_not_found_before_any_is_signed(client, act_as):
    act_as(LEGAL)
    assert client.get("/api/audit/checkpoints/latest").status_code == 404


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 31, 64, 100])
def test_export_proofs_equal_the_reference_audit_paths(size):
    leaves = [merkle.leaf_hash(bytes([i % 256, i // 256])) for i in range(size)]
    tree = ProofTree(leaves)
    for index in range(size):
        assert tree.inclusion(index) == merkle.inclusion_proof(index, leaves)


def test_verify_names_the_first_tampered_entry(client, act_as, seeded, db_connection):
    db_connection.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only"))
    db_connection.execute(text("UPDATE audit_entry SET project_id = 'proj-x' WHERE seq = 7"))
    db_connection.execute(text("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only"))
    act_as(LEGAL)
    body = client.get("/api/audit/verify").json()
    assert body["ok"] is False
    assert body["first_bad_seq"] == 7
    assert body["problems"][0]["kind"] == "modified_entry"


def test_entries_emptied_by_retention_are_marked_and_still_proven(
    client, act_as, session_factory, components, monkeypatch
):
    from access.audit import recording, service

    past = datetime.now(UTC) - timedelta(days=3 * 365)
    monkeypatch.setattr(recording, "clock", lambda: past)
    with session_scope(session_factory) as session:
        for i in range(4):
            record(session, STEWARD, ACTION, target_id=f"old-{i}", details={"purpose": "questionnaires"})
    monkeypatch.setattr(recording, "clock", lambda: datetime.now(UTC))
    with session_scope(session_factory) as session:
        record(session, STEWARD, ACTION, target_id="recent", details={"purpose": "questionnaires"})
        service.apply_retention(session, components.keys, retention_days=2 * 365)
    act_as(LEGAL)
    document = client.get("/api/audit/export", params={"format": "json", "last_seq": "5"}).json()
    checkpoint = SignedCheckpoint.from_json(document["checkpoint"])
    entries = document["entries"]
    assert [e["pruned_at"] is not None for e in entries] == [True] * 4 + [False]
    assert entries[0]["target_id"] is None
    for entry in entries:
        proof = [bytes.fromhex(p) for p in entry["inclusion_proof"]]
        leaf = canonical.entry_leaf(entry["entry_hash"])
        root = bytes.fromhex(checkpoint.root_hash)
        assert merkle.verify_inclusion(entry["leaf_index"], checkpoint.tree_size, leaf, proof, root)
    body = client.get("/api/audit/verify").json()
    assert (body["ok"], body["pruned"]) == (True, 4), body
