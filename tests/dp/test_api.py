"""The DP query API as researchers and the DPO use it: preview, release, replay, refusals, budgets, CSV."""

from __future__ import annotations

import csv
import io
import math
from datetime import timedelta

import pytest

from access.audit.actions import Role
from access.projects.models import ProjectStatus
from access.projects.rules import utc_today
from tests.dp.conftest import (
    DATASET,
    count_spec,
    headers,
    make_project,
    make_researcher,
    make_staff,
    mean_spec,
)
from tests.dp.conftest import set_project as change_project


def ask(client, user, project_id, spec, path="/api/dp/queries"):
    return client.post(path, json={"project_id": project_id, "spec": spec}, headers=headers(client, user))


def test_a_release_answers_estimates_with_accuracy_and_the_remaining_budget(world, app_client):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    answer = ask(app_client, owner, project_id, count_spec())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["reused"] is False
    assert body["epsilon"] == body["charged_epsilon"] == "0.1000"
    assert body["remaining_epsilon"] == "0.9000"
    assert body["dataset"] == DATASET
    assert body["version"] >= world.version
    rows = body["result"]["rows"]
    assert [r["gender"] for r in rows] == ["female", "male", "other"]
    for row in rows:
        assert set(row) >= {"estimate", "accuracy_95", "noise_dominates"}
    assert "consenting_digest" not in body, "researchers learn nothing about who consented"
    assert body["result"]["epsilon_spent"] <= 0.1


def test_the_same_query_again_is_the_stored_release_at_no_cost(world, app_client):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    first = ask(app_client, owner, project_id, count_spec()).json()
    again = ask(app_client, owner, project_id, count_spec()).json()
    assert again["reused"] is True
    assert again["charged_epsilon"] == "0.0000"
    assert again["id"] == first["id"]
    assert again["result"] == first["result"]
    assert again["remaining_epsilon"] == "0.9000"


def test_budget_exhausted_is_a_409_with_the_reason_and_the_remaining_epsilon(world, app_client):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="0.15")
    assert ask(app_client, owner, project_id, count_spec()).status_code == 200
    answer = ask(app_client, owner, project_id, count_spec(group_by=["stage"]))
    assert answer.status_code == 409
    body = answer.json()
    assert body["reason"] == "budget_exhausted"
    assert body["remaining_epsilon"] == "0.0500"
    assert body["requested_epsilon"] == "0.1000"
    assert "budget exhausted" in body["detail"]


def test_preview_gives_epsilon_and_accuracy_without_spending(world, app_client):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    answer = ask(app_client, owner, project_id, count_spec(), path="/api/dp/preview")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["epsilon"] == "0.1000"
    assert body["statistics"][0]["accuracy_95"] > 0
    assert body["remaining_epsilon"] == "1.0000"
    assert body["runs_as_job"] is False
    wider = body["statistics"][0]["accuracy_95"]
    inverse = ask(
        app_client, owner, project_id, count_spec(epsilon=None, accuracy=wider), path="/api/dp/preview"
    ).json()
    # The ε derived from an accuracy meets it (rounded up, never down).
    assert 0.1 <= float(inverse["epsilon"]) < 0.2
    assert inverse["statistics"][0]["accuracy_95"] <= wider
    budget = app_client.get(
        f"/api/dp/projects/{project_id}/budget", headers=headers(app_client, owner)
    ).json()
    assert budget["spent"] == "0.0000"


def test_a_median_previews_its_band_of_ranks_and_releases_with_it_and_its_candidate_grid(world, app_client):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    median = mean_spec(statistic="quantile", quantile=0.5)
    preview = ask(app_client, owner, project_id, median, path="/api/dp/preview")
    assert preview.status_code == 200, preview.text
    [statistic] = preview.json()["statistics"]
    # No ± in the variable's unit holds for every dataset; a band of ranks does (ε = 0.1: 1/ε
    # students per unit of noise, times ln(100 / 0.1)), and the grid's half step (bounds [1, 5]).
    assert statistic["accuracy_95"] is None
    assert statistic["rank_accuracy_95"] == pytest.approx(10 * math.log(1000))
    assert statistic["grid_half_step"] == pytest.approx(0.02)
    released = ask(app_client, owner, project_id, median)
    assert released.status_code == 200, released.text
    result = released.json()["result"]
    assert 1.0 <= result["rows"][0]["estimate"] <= 5.0
    assert result["rows"][0]["rank_accuracy_95"] == statistic["rank_accuracy_95"]
    assert result["details"]["candidates"] == {"count": 101, "step": pytest.approx(0.04)}
    # A target accuracy is a ± in the variable's unit: a quantile does not promise one.
    refused = ask(
        app_client, owner, project_id, {**median, "epsilon": None, "accuracy": 0.5}, path="/api/dp/preview"
    )
    assert refused.status_code == 422
    assert refused.json()["reason"] == "accuracy_not_supported"
    assert "band of ranks" in refused.json()["detail"]


def _problem(answer, status):
    assert answer.status_code == status, answer.text
    return answer.json()


def test_every_refusal_rule_answers_a_clear_4xx_naming_the_field_or_reason(world, app_client):
    owner = make_researcher(world)
    outsider = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0", variables=("gender", "engagement"))

    # not a member: the project does not exist for them
    _problem(ask(app_client, outsider, project_id, count_spec()), 404)
    # a variable outside the approved list
    body = _problem(ask(app_client, owner, project_id, count_spec(group_by=["stage"])), 422)
    assert body["errors"][0]["field"].endswith("group_by[0]")
    assert body["reason"] == "variable_not_approved"
    # a special-category variable nobody granted
    body = _problem(ask(app_client, owner, project_id, count_spec(group_by=["special_needs"])), 422)
    assert body["reason"] == "variable_not_approved"
    # a dataset outside the project's scope
    body = _problem(ask(app_client, owner, project_id, count_spec(dataset="other-dataset")), 422)
    assert body["errors"][0]["field"] == "body.spec.dataset"
    assert body["reason"] == "dataset_not_allowed"
    # a version that does not exist
    body = _problem(ask(app_client, owner, project_id, count_spec(version=99)), 422)
    assert body["errors"][0]["field"] == "body.spec.version"
    # a filter on a non-public (numeric) variable
    spec = count_spec(filters=[{"variable": "engagement", "op": "eq", "values": [3]}])
    body = _problem(ask(app_client, owner, project_id, spec), 422)
    assert "filters[0]" in body["errors"][0]["field"]
    # a malformed spec: unknown field, and both ε and accuracy
    body = _problem(ask(app_client, owner, project_id, {**count_spec(), "rows": True}), 422)
    assert any("rows" in e["field"] for e in body["errors"])
    _problem(ask(app_client, owner, project_id, count_spec(accuracy=3.0)), 422)
    # widening the catalog's bounds
    _problem(ask(app_client, owner, project_id, mean_spec(upper=9.0)), 422)
    # a project that is suspended, or past its end date
    change_project(world, project_id, status=ProjectStatus.suspended.value)
    body = _problem(ask(app_client, owner, project_id, count_spec()), 409)
    assert body["reason"] == "project_not_active"
    change_project(
        world, project_id, status=ProjectStatus.active.value, granted_end_date=utc_today() - timedelta(days=1)
    )
    body = _problem(ask(app_client, owner, project_id, count_spec()), 409)
    assert body["reason"] == "project_ended"
    budget = app_client.get(
        f"/api/dp/projects/{project_id}/budget", headers=headers(app_client, owner)
    ).json()
    assert budget["spent"] == "0.0000"
    assert budget["spends"] == []


def test_releases_are_listed_read_and_downloaded_as_csv_by_members_and_the_dpo(world, app_client):
    owner = make_researcher(world)
    outsider = make_researcher(world)
    dpo = make_staff(world, Role.dpo)
    project_id = make_project(world, owner, epsilon="1.0")
    released = ask(app_client, owner, project_id, count_spec()).json()
    for reader in (owner, dpo):
        page = app_client.get(
            "/api/dp/releases", params={"project_id": project_id}, headers=headers(app_client, reader)
        )
        assert page.status_code == 200, page.text
        assert [item["id"] for item in page.json()["items"]] == [released["id"]]
        one = app_client.get(f"/api/dp/releases/{released['id']}", headers=headers(app_client, reader))
        assert one.json()["result"] == released["result"]
    download = app_client.get(f"/api/dp/releases/{released['id']}/csv", headers=headers(app_client, owner))
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(download.text)))
    assert [row["gender"] for row in table] == ["female", "male", "other"]
    assert {"estimate", "accuracy_95", "noise_dominates"} <= set(table[0])
    for path in (f"/api/dp/releases/{released['id']}", f"/api/dp/releases/{released['id']}/csv"):
        assert app_client.get(path, headers=headers(app_client, outsider)).status_code == 404
    listing = app_client.get(
        "/api/dp/releases", params={"project_id": project_id}, headers=headers(app_client, outsider)
    )
    assert listing.status_code == 404


def test_budget_view_per_researcher_and_over_time_and_the_dpos_overview(world, app_client):
    owner = make_researcher(world)
    member = make_researcher(world)
    outsider = make_researcher(world)
    dpo = make_staff(world, Role.dpo)
    project_id = make_project(world, owner, epsilon="1.0", members=(member,))
    ask(app_client, owner, project_id, count_spec())
    ask(app_client, member, project_id, count_spec(group_by=["stage"], epsilon="0.25"))
    budget = app_client.get(f"/api/dp/projects/{project_id}/budget", headers=headers(app_client, member))
    assert budget.status_code == 200
    body = budget.json()
    assert (body["granted"], body["spent"], body["remaining"]) == ("1.0000", "0.3500", "0.6500")
    spent = {r["account_id"]: r["spent"] for r in body["researchers"]}
    assert spent == {owner.account_id: "0.1000", member.account_id: "0.2500"}
    assert [p["cumulative"] for p in body["spends"]] == ["0.1000", "0.3500"]
    assert (
        app_client.get(
            f"/api/dp/projects/{project_id}/budget", headers=headers(app_client, outsider)
        ).status_code
        == 404
    )
    overview = app_client.get("/api/dp/budgets", headers=headers(app_client, dpo))
    assert overview.status_code == 200
    mine = next(b for b in overview.json() if b["project_id"] == project_id)
    assert mine["spent"] == "0.3500"
    assert app_client.get("/api/dp/budgets", headers=headers(app_client, owner)).status_code == 403


def test_the_owner_caps_a_member_and_the_cap_refuses_with_its_own_reason(world, app_client):
    owner = make_researcher(world)
    member = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0", members=(member,))
    path = f"/api/dp/projects/{project_id}/caps/{member.account_id}"
    assert app_client.put(path, json={"cap": "0.1"}, headers=headers(app_client, member)).status_code == 403
    capped = app_client.put(path, json={"cap": "0.1"}, headers=headers(app_client, owner))
    assert capped.status_code == 200, capped.text
    assert {r["account_id"]: r["cap"] for r in capped.json()["researchers"]}[member.account_id] == "0.1000"
    assert ask(app_client, member, project_id, count_spec()).status_code == 200
    refused = ask(app_client, member, project_id, count_spec(group_by=["stage"]))
    assert refused.status_code == 409
    assert refused.json()["reason"] == "researcher_cap_reached"
    assert ask(app_client, owner, project_id, count_spec(group_by=["stage"])).status_code == 200
    removed = app_client.put(path, json={"cap": None}, headers=headers(app_client, owner))
    assert {r["account_id"]: r["cap"] for r in removed.json()["researchers"]}[member.account_id] is None
