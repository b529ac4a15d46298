"""A refused release is one ``dp.query_refused`` ledger entry carrying what was asked: the reason, the
dataset, the spec's hash and the ε (the spec's, or the one derived from its target accuracy), read
back from the ledger; a refused preview leaves none. The refusal's details accept nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from access.audit.actions import FailureDetails, Outcome, validate_details
from access.audit.exceptions import AuditDetailsRejected
from access.audit.models import AuditEntry
from access.audit.sealer import sealer_for
from dp_queries.service import DP_QUERY_REFUSED, DP_QUERY_RELEASED, RefusalDetails
from dp_queries.spec import QuerySpec, spec_hash
from tests.dp.conftest import (
    DATASET,
    DpWorld,
    count_spec,
    headers,
    make_project,
    make_researcher,
    set_project,
)

HASH = "a" * 64


def ask(client: Any, user: Any, project_id: str, spec: dict[str, Any], path: str = "/api/dp/queries") -> Any:
    return client.post(path, json={"project_id": project_id, "spec": spec}, headers=headers(client, user))


def refused_entries(world: DpWorld, project_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """The project's chained ``dp.query_refused`` entries: (outcome, target, details)."""
    sealer_for(world.engine).flush()
    with world.sessions() as session:
        rows = session.execute(
            select(AuditEntry.outcome, AuditEntry.target_id, AuditEntry.details)
            .where(AuditEntry.project_id == project_id, AuditEntry.action == DP_QUERY_REFUSED)
            .order_by(AuditEntry.seq)
        ).all()
    return [(o, t, d) for o, t, d in rows]


def digest(spec: dict[str, Any]) -> str:
    return spec_hash(QuerySpec.model_validate(spec))


@pytest.mark.parametrize(
    ("case", "spec", "status", "reason"),
    [
        ("budget", count_spec(epsilon="0.3"), 409, "budget_exhausted"),
        ("variable", count_spec(group_by=["special_needs"]), 422, "variable_not_approved"),
        ("dataset", count_spec(), 422, "dataset_not_allowed"),
    ],
)
def test_a_refused_release_is_one_denied_entry_with_its_spec_hash_and_epsilon(
    world, app_client, *, case: str, spec: dict[str, Any], status: int, reason: str
) -> None:
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="0.2")
    if case == "dataset":  # the catalog's dataset, outside the project's scope
        set_project(world, project_id, allowed_datasets=[])
    answer = ask(app_client, owner, project_id, spec)
    assert answer.status_code == status, answer.text
    assert answer.json()["reason"] == reason
    [(outcome, target, details)] = refused_entries(world, project_id)
    assert outcome == "denied"
    assert target == details["spec_hash"] == digest(spec)
    assert details["error"] == reason
    assert details["epsilon"] == ("0.3000" if case == "budget" else "0.1000")
    assert details["dataset"] == spec["dataset"]
    if case == "budget":
        assert details["version"] >= world.version  # prepared: the version it would have read


def test_a_refused_release_records_the_epsilon_derived_from_its_target_accuracy(world, app_client) -> None:
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="0.01")
    spec = count_spec(epsilon=None, accuracy=20.0)
    preview = ask(app_client, owner, project_id, spec, path="/api/dp/preview")
    assert preview.status_code == 200, preview.text
    derived = preview.json()["epsilon"]
    assert derived != "0.0000"
    answer = ask(app_client, owner, project_id, spec)
    assert answer.status_code == 409, answer.text
    [(outcome, target, details)] = refused_entries(world, project_id)
    assert (outcome, target) == ("denied", digest(spec))
    assert details["error"] == "budget_exhausted"
    assert details["epsilon"] == derived == answer.json()["requested_epsilon"]


def test_an_epsilon_that_cannot_be_known_is_left_out_and_refused_previews_leave_nothing(
    world, app_client
) -> None:
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    # A spec giving both ε and an accuracy: which one it asks is unknown.
    both = count_spec(accuracy=3.0)
    assert ask(app_client, owner, project_id, both).status_code == 422
    # A target accuracy refused before ε is derived (a variable outside the project).
    unknown = count_spec(epsilon=None, accuracy=3.0, group_by=["special_needs"])
    assert ask(app_client, owner, project_id, unknown).status_code == 422
    # A dataset the catalog does not have: what the researcher typed stays out of the ledger.
    typed = count_spec(dataset="not-a-dataset")
    assert ask(app_client, owner, project_id, typed).status_code == 422
    # A refused preview is not a refused release.
    outside = count_spec(group_by=["special_needs"])
    assert ask(app_client, owner, project_id, outside, path="/api/dp/preview").status_code == 422
    entries = refused_entries(world, project_id)
    assert [(o, t) for o, t, _ in entries] == [
        ("denied", digest(both)),
        ("denied", digest(unknown)),
        ("denied", digest(typed)),
    ]
    for _, _, details in entries[:2]:
        assert "epsilon" not in details
        assert details["dataset"] == DATASET
    assert "dataset" not in entries[2][2]
    assert entries[2][2]["epsilon"] == "0.1000"


def test_refusal_details_are_the_registered_model_and_nothing_more() -> None:
    good = RefusalDetails(error="budget_exhausted", dataset=DATASET, spec_hash=HASH, epsilon="0.1000")
    assert validate_details(DP_QUERY_REFUSED, Outcome.denied, good) == {
        "error": "budget_exhausted",
        "dataset": DATASET,
        "spec_hash": HASH,
        "epsilon": "0.1000",
    }
    # The action's failure model is required: the reason alone is not enough.
    with pytest.raises(AuditDetailsRejected):
        validate_details(DP_QUERY_REFUSED, Outcome.denied, {"error": "budget_exhausted"})
    with pytest.raises(AuditDetailsRejected):
        validate_details(DP_QUERY_REFUSED, Outcome.denied, FailureDetails(error="budget_exhausted"))

    class Smuggled(RefusalDetails):
        note: str

    # A subclass cannot slip a free-text field in.
    with pytest.raises(AuditDetailsRejected):
        validate_details(
            DP_QUERY_REFUSED, Outcome.denied, Smuggled(error="x", spec_hash=HASH, note="Jane Doe")
        )
    with pytest.raises(AuditDetailsRejected):
        validate_details(DP_QUERY_REFUSED, Outcome.denied, {"error": "x", "spec_hash": HASH, "note": "x"})
    # An action without a failure model of its own keeps the reason-only details.
    assert validate_details(DP_QUERY_RELEASED, Outcome.denied, {"error": "x"}) == {"error": "x"}
    with pytest.raises(AuditDetailsRejected):
        validate_details(DP_QUERY_RELEASED, Outcome.denied, good)
