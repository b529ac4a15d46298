"""The researcher portal and the DPO's budget view over HTTP: staff sign-in and roles, a
researcher's own projects and granted variables only, the query builder with its server-side
preview, a release shown as a chart and a table with the budget, refusals as clear messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pyotp
import pytest
from sqlalchemy import select, update

from access.accounts.models import Account
from access.audit.actions import Role
from access.principal import Principal
from access.projects import decisions
from access.projects import service as projects
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.identity import IdentityProtector
from consent.rosters.importing import import_students
from consent.rosters.importing_guardians import import_guardians
from consent.rosters.models import Guardian, Guardianship, Student
from enclave.datasets import service as catalog
from enclave.datasets.ingestion import ingest
from enclave.datasets.schemas import DatasetCreate
from enclave.objects.store import EncryptedStore
from enclave.synthetic import generate
from tests.support.consent import load_rules, make_form
from tests.support.projects import make_principal, proposal, terms

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
DATASET = "wave1_students"
SCHEMA = {
    "subject_id_column": "student_ref",
    "school_column": "school",
    "variables": [
        {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
        {"name": "stage", "type": "integer", "min": 1, "max": 4},
        {"name": "engagement", "type": "numeric", "min": 1, "max": 5},
        {"name": "special_needs", "type": "boolean", "special_category": True},
    ],
}
GRANTED = [f"{DATASET}.gender", f"{DATASET}.engagement"]


def sign_in_page(client, user, target: str = "/staff/research") -> None:
    """Sign in through the staff sign-in form, as a browser does (cookie session)."""
    client.cookies.clear()
    token = CSRF.search(client.get("/staff/login").text).group(1)
    with client.app.state.components.session_factory() as session:
        session.execute(update(Account).where(Account.id == user.account_id).values(totp_last_step=None))
        session.commit()
    code = pyotp.TOTP(user.totp_secret).now() if user.totp_secret else ""
    answer = client.post(
        "/staff/login",
        data={
            "email": user.email,
            "password": user.password,
            "totp": code,
            "csrf_token": token,
            "next": target,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == target


def _steward(session) -> Principal:
    base = make_principal(session, Role.data_steward)
    return Principal(account_id=base.account_id, roles=base.roles, country="ES", schools=frozenset())


def make_dataset(session, steward: Principal | None = None) -> None:
    """The dataset in the catalog (no version yet)."""
    catalog.create_dataset(
        session,
        steward or _steward(session),
        DatasetCreate.model_validate(
            {
                "id": DATASET,
                "title": "Students, first wave",
                "purpose": "questionnaires",
                "domain": "letscare-main",
                "retention_until": (datetime.now(UTC) + timedelta(days=365)).date().isoformat(),
                "schema": SCHEMA,
            }
        ),
    )


def _age(student: Student) -> int:
    now = datetime.now(UTC)
    return now.year - student.birth_year - (1 if now.month <= student.birth_month else 0)


def publish_dataset(session, components, *, students: int = 200) -> int:
    """A Spanish school's roster (about ``students``), every student's questionnaires consent
    granted, the dataset published with their answers; the number of students stored."""
    load_rules(session)
    steward = _steward(session)
    protector = IdentityProtector(components.keys)
    data = generate(students=students * 6, schools=6, seed=11)  # one school per country
    roster = data.students.filter(pl.col("country") == "ES")
    school = roster["school"][0]
    import_students(session, steward, protector, roster.write_csv().encode())
    import_guardians(
        session, steward, protector, data.guardians.filter(pl.col("school") == school).write_csv().encode()
    )
    form = make_form(session, "ES", "es")
    guardian_text = next(t.sha256 for t in form.texts if t.audience == "guardian")
    child_text = next(t.sha256 for t in form.texts if t.audience == "child")
    for student in session.execute(select(Student).where(Student.school_code == school)).scalars():
        guardian = (
            session.execute(
                select(Guardian)
                .join(Guardianship, Guardianship.guardian_id == Guardian.id)
                .where(Guardianship.student_id == student.id)
            )
            .scalars()
            .first()
        )
        age = _age(student)
        # Spain: the guardians decide below 14 (with the child's assent from 7); from 14 the student alone.
        deciders = [("student", None, child_text)] if age >= 14 else [("guardian", guardian, guardian_text)]
        if 7 <= age < 14:
            deciders.append(("student", None, child_text))
        for by, who, text in deciders:
            record_decision(
                session,
                steward.actor,
                DecisionCreate(
                    subject_id=student.subject_id,
                    decided_by=by,
                    guardian_id=who.guardian_id if who else None,
                    form_id=form.id,
                    text_sha256=text,
                    choices={"questionnaires": "granted"},
                    channel="paper",
                ),
            )
    make_dataset(session, steward)
    upload = data.questionnaire.filter(pl.col("school") == school).select(
        "student_ref", "school", "gender", "stage", "engagement", "special_needs"
    )
    store = EncryptedStore(None, components.keys, components.storage)
    report = ingest(session, steward, store, protector, dataset_id=DATASET, data=upload.write_csv().encode())
    return report.rows_stored


def make_project(
    db_session, user, title: str, *, epsilon: str = "1.0", variables: list[str] | None = None
) -> str:
    """An active project of ``user`` granted ``epsilon`` on the dataset's ``variables``."""
    owner = Principal(account_id=user.account_id, roles=frozenset({Role.researcher}))
    wanted = variables or GRANTED
    created = projects.create_project(
        db_session,
        owner,
        proposal(title=title, datasets=[DATASET], variables=wanted, requested_epsilon=epsilon),
    )
    projects.submit_project(db_session, owner, created.id)
    dpo = make_principal(db_session, Role.dpo)
    decisions.approve_project(
        db_session, dpo, created.id, terms(epsilon, datasets=[DATASET], variables=wanted)
    )
    return created.id


@pytest.fixture
def world(db_session, staff_factory) -> dict[str, Any]:
    make_dataset(db_session)
    alice = staff_factory(roles=[Role.researcher])
    bob = staff_factory(roles=[Role.researcher])
    return {
        "alice": alice,
        "bob": bob,
        "alice_project": make_project(db_session, alice, "Attachment and leaving school"),
        "bob_project": make_project(db_session, bob, "Bob's other project"),
    }


def test_portal_sends_anonymous_visitors_to_sign_in_and_refuses_other_roles(client, staff_factory):
    answer = client.get("/staff/research/query", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/staff/login?next=%2Fstaff%2Fresearch%2Fquery"
    sign_in_page(client, staff_factory(roles=[Role.data_steward]), "/staff/steward")
    for path in ("/staff/research", "/staff/research/query"):
        refused = client.get(path)
        assert refused.status_code == 403
        assert "Not allowed" in refused.text


def test_a_researcher_sees_only_their_own_projects(client, world):
    sign_in_page(client, world["alice"])
    page = client.get("/staff/research")
    assert page.status_code == 200
    assert '<html lang="en">' in page.text
    assert "Attachment and leaving school" in page.text
    assert "Bob&#39;s other project" not in page.text
    assert f"/staff/research/query?project={world['alice_project']}&amp;dataset={DATASET}" in page.text


def test_the_builder_offers_only_the_projects_granted_variables(client, world):
    sign_in_page(client, world["alice"])
    page = client.get(f"/staff/research/query?project={world['alice_project']}&dataset={DATASET}")
    assert page.status_code == 200
    numeric = re.findall(r'<option value="(\w+)"', page.text.split('id="variable"')[1].split("</select>")[0])
    assert numeric == ["engagement"]
    assert re.findall(r'name="group_by" value="(\w+)"', page.text) == ["gender"]
    assert "stage" not in re.findall(r'value="(\w+)=', page.text)
    assert "special_needs" not in page.text
    for field in ("variable", "lower", "upper", "quantile", "bins", "epsilon", "accuracy"):
        assert f'<label for="{field}">' in page.text  # every field has its label


def test_the_builder_refuses_someone_elses_project_with_a_message(client, world):
    sign_in_page(client, world["alice"])
    page = client.get(f"/staff/research/query?project={world['bob_project']}&dataset={DATASET}")
    assert page.status_code == 404
    assert "Project: this is not one of your projects." in page.text
    assert "Bob&#39;s other project" not in page.text


@pytest.fixture
def published(db_session, components, staff_factory) -> dict[str, Any]:
    """The dataset published with about 80 consenting students; Alice's project granted ε = 1."""
    stored = publish_dataset(db_session, components, students=80)
    alice = staff_factory(roles=[Role.researcher])
    return {"alice": alice, "project": make_project(db_session, alice, "Attachment"), "stored": stored}


def builder_form(client, project: str, **fields: Any) -> dict[str, Any]:
    page = client.get(f"/staff/research/query?project={project}&dataset={DATASET}")
    form: dict[str, Any] = {
        "csrf_token": CSRF.search(page.text).group(1),
        "project": project,
        "dataset": DATASET,
        "statistic": "count",
        "budget_by": "epsilon",
        "epsilon": "0.5",
    }
    form.update(fields)
    return form


def test_preview_without_script_shows_epsilon_and_accuracy_and_spends_nothing(client, published):
    sign_in_page(client, published["alice"])
    form = builder_form(client, published["project"], group_by="gender", action="preview")
    page = client.post("/staff/research/query", data=form)
    assert page.status_code == 200
    region = page.text.split('id="preview"')[1].split("</section>")[0]
    assert 'ε = <span data-preview="epsilon">0.5</span>' in region
    assert re.search(r'<span class="stat-name">count</span>: ± [0-9.]+ at 95 %', region)
    assert 'value="gender" checked' in page.text  # the form comes back as it was


def test_a_median_previews_its_band_of_ranks_and_the_grid_half_step(client, published):
    sign_in_page(client, published["alice"])
    form = builder_form(
        client, published["project"], statistic="quantile", variable="engagement", action="preview"
    )
    page = client.post("/staff/research/query", data=form)
    assert page.status_code == 200, page.text
    region = page.text.split('id="preview"')[1].split("</section>")[0]
    # ε = 0.5: 2 students per unit of noise, times ln(100 / 0.1); candidates 0.04 apart on [1, 5].
    assert '<span class="stat-name">quantile</span>: ± 13.82 students in rank at 95 %' in region
    assert "the number of students below the released value is within 13.82 of the quantile's" in region
    assert "may also be up to 0.02 off" in region
    assert "depends on the data" not in region


def test_a_target_accuracy_shows_the_epsilon_it_needs(client, published):
    sign_in_page(client, published["alice"])
    form = builder_form(client, published["project"], budget_by="accuracy", accuracy="10", action="preview")
    page = client.post("/staff/research/query", data=form)
    assert page.status_code == 200
    epsilon = re.search(r'data-preview="epsilon">([0-9.]+)<', page.text).group(1)
    accuracy = re.search(r"count</span>: ± ([0-9.]+) at 95 %", page.text).group(1)
    assert float(accuracy) <= 10
    assert 0 < float(epsilon) < 1


def test_a_refused_query_names_the_field_and_comes_back_filled_in(client, published):
    sign_in_page(client, published["alice"])
    form = builder_form(
        client, published["project"], statistic="crosstab", group_by="gender", action="preview"
    )
    page = client.post("/staff/research/query", data=form)
    assert page.status_code == 422
    alert = page.text.split('role="alert"')[1].split("</div>")[0]
    assert "Group by: a cross-tabulation groups on two or more categorical variables" in alert
    assert '<a href="#group-by">Go to the field</a>' in alert
    assert 'id="statistic-crosstab" name="statistic" value="crosstab" checked' in page.text


def test_live_preview_answers_json_with_the_region_html(client, published):
    sign_in_page(client, published["alice"])
    form = builder_form(client, published["project"], statistic="mean", variable="engagement")
    answer = client.post("/staff/research/preview", data=form)
    assert answer.status_code == 200
    body = answer.json()
    assert body["epsilon"] == "0.5"
    assert [s["name"] for s in body["statistics"]] == ["sum", "count"]
    assert 'data-preview="epsilon">0.5<' in body["html"]
    refused = client.post("/staff/research/preview", data={**form, "variable": "stage"})
    assert refused.status_code == 422
    assert refused.json()["field"] == "variable"
    assert "not among the project&#39;s approved variables" in refused.json()["html"]
    expired = client.post("/staff/research/preview", data={**form, "csrf_token": "forged"})
    assert expired.status_code == 400


def release(client, project: str, **fields: Any):
    form = builder_form(client, project, action="release", **fields)
    return client.post("/staff/research/query", data=form, follow_redirects=False)


def test_a_release_through_the_form_shows_a_chart_a_table_and_the_budget(client, published):
    sign_in_page(client, published["alice"])
    answer = release(
        client,
        published["project"],
        statistic="mean",
        variable="engagement",
        group_by="gender",
        epsilon="0.4",
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert re.fullmatch(r"/staff/research/releases/[0-9a-f-]{36}\?released=1", location)
    page = client.get(location)
    assert page.status_code == 200
    assert "<strong>Released.</strong> This release spent ε = 0.4 of the project" in page.text
    assert "<h1>Result: Mean of engagement by gender</h1>" in page.text
    chart = page.text.split('<svg role="img"')[1].split("</svg>")[0]
    assert '<title id="result-chart-title">Mean of engagement by gender with 95 % error bars</title>' in chart
    assert chart.count("<circle") == 3  # a point per gender, each with its error bar
    rows = re.findall(r'<tr(?: class="noisy")?>\s*<th scope="row">(\w+)</th><td>mean</td>', page.text)
    assert rows == ["female", "male", "other"]
    assert '<dd data-budget="spent">0.4</dd>' in page.text
    assert '<dd data-budget="remaining">0.6</dd>' in page.text
    download = client.get(location.split("?")[0] + "/result.csv")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert (
        download.text.splitlines()[0]
        == "gender,statistic,estimate,accuracy_95,lower_95,upper_95,noise_dominates"
    )
    assert len(download.text.splitlines()) == 4


def test_the_same_query_again_returns_the_stored_result_at_no_cost(client, published):
    sign_in_page(client, published["alice"])
    first = release(client, published["project"], epsilon="0.3")
    again = release(client, published["project"], epsilon="0.3")
    assert again.headers["location"] == first.headers["location"].replace("released=1", "reused=1")
    page = client.get(again.headers["location"])
    assert "the stored result was returned at no cost" in page.text
    assert '<dd data-budget="spent">0.3</dd>' in page.text


def test_an_exhausted_budget_is_a_clear_message_and_spends_nothing(client, published, db_session):
    sign_in_page(client, published["alice"])
    assert release(client, published["project"], epsilon="0.8").status_code == 303
    refused = release(client, published["project"], statistic="sum", variable="engagement", epsilon="0.5")
    assert refused.status_code == 409
    alert = refused.text.split('role="alert"')[1].split("</div>")[0]
    assert "<strong>Budget exhausted.</strong>" in alert
    assert "Nothing was spent" in alert
    assert '<dd data-budget="remaining">0.2</dd>' in refused.text
    preview = client.post(
        "/staff/research/preview", data=builder_form(client, published["project"], epsilon="0.5")
    )
    assert "More than the remaining budget" in preview.json()["html"]


def test_a_refused_release_names_the_field(client, published):
    sign_in_page(client, published["alice"])
    refused = release(
        client, published["project"], statistic="quantile", variable="engagement", quantile="1.5"
    )
    assert refused.status_code == 422
    assert "Quantile: a quantile between 0 and 1" in refused.text


def test_the_dpo_sees_every_projects_budget_over_time(client, published, staff_factory):
    sign_in_page(client, published["alice"])
    release(client, published["project"], epsilon="0.25")
    release(client, published["project"], statistic="sum", variable="engagement", epsilon="0.25")
    assert client.get("/staff/budgets").status_code == 403
    sign_in_page(client, staff_factory(roles=[Role.dpo]), "/staff/budgets")
    page = client.get("/staff/budgets")
    assert page.status_code == 200
    row = page.text.split(f'href="#project-{published["project"]}">Attachment</a></th>')[1].split("</tr>")[0]
    assert re.findall(r'<td class="number">([0-9.]+)</td>', row) == ["1", "0.5", "0.5", "2"]
    section = page.text.split(f'id="project-{published["project"]}"')[1].split("</section>")[0]
    assert '<title id="chart-title-' in section
    assert "ε spent over time by Attachment" in section
    assert section.count('<tr><th scope="row">20') == 2  # one row per spend
