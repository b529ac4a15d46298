"""Research projects: the approval state machine, who may decide, scoping, and the ledger trail."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from access.audit.actions import Role
from access.projects import service
from access.projects.agreement import Agreement
from access.projects.decisions import (
    approve_project,
    close_project,
    reinstate_project,
    reject_project,
    request_changes,
    run_lifecycle,
    suspend_project,
)
from access.projects.exceptions import (
    IllegalTransition,
    InvalidProject,
    NotAllowedOnProject,
    ProjectNotFound,
    ProjectRuleBroken,
)
from access.projects.models import ProjectStatus
from access.projects.rules import grants_access
from access.projects.schemas import ProjectUpdate
from access.projects.service import (
    add_member,
    create_project,
    get_project,
    list_projects,
    submit_project,
    update_project,
)
from infra.tasks import PERIODIC_JOBS
from tests.support.projects import TODAY, actions, ledger, make_principal, proposal, terms

THRESHOLD = Decimal("2.0")


@pytest.fixture
def people(db_session):
    """One account per role, plus a second researcher, DPO and admin."""
    return {
        "owner": make_principal(db_session, Role.researcher),
        "other_researcher": make_principal(db_session, Role.researcher),
        "dpo": make_principal(db_session, Role.dpo),
        "dpo2": make_principal(db_session, Role.dpo),
        "admin": make_principal(db_session, Role.admin),
        "legal": make_principal(db_session, Role.legal_reviewer),
        "steward": make_principal(db_session, Role.data_steward),
    }


def _submitted(db_session, people, **overrides):
    project = create_project(db_session, people["owner"], proposal(**overrides))
    return submit_project(db_session, people["owner"], project.id)


def _active(db_session, people, **overrides):
    project = _submitted(db_session, people, **overrides)
    return approve_project(db_session, people["dpo"], project.id, terms(), second_approval_epsilon=THRESHOLD)


# --- proposal -------------------------------------------------------------------------------------


def test_a_researcher_drafts_a_project_and_becomes_its_owner(db_session, people):
    project = create_project(db_session, people["owner"], proposal())
    assert project.status == ProjectStatus.draft
    assert project.owner_id == people["owner"].account_id
    view = service.view(db_session, project, THRESHOLD)
    assert [(m.account_id, m.role) for m in view.members] == [(people["owner"].account_id, "owner")]
    assert project.requested_epsilon == Decimal("1.5")
    assert actions(db_session, project.id) == [("project.created", "ok")]


def test_justification_is_kept_in_the_project_and_never_in_the_ledger(db_session, people):
    project = create_project(db_session, people["owner"], proposal())
    submit_project(db_session, people["owner"], project.id)
    for entry in ledger(db_session, project.id):
        assert "attachment" not in str(entry.details).lower()
        assert project.title not in str(entry.details)


def test_special_category_purpose_needs_an_article_9_condition(db_session, people):
    with pytest.raises(InvalidProject, match=r"Art\. 9"):
        create_project(db_session, people["owner"], proposal(purpose="special_category"))
    project = create_project(
        db_session,
        people["owner"],
        proposal(purpose="special_category", special_category_condition="gdpr_9_2_j_research"),
    )
    assert project.special_category_condition == "gdpr_9_2_j_research"
    with pytest.raises(InvalidProject, match="only to the special_category purpose"):
        create_project(
            db_session, people["owner"], proposal(special_category_condition="gdpr_9_2_a_explicit_consent")
        )


def test_variables_must_belong_to_a_requested_dataset(db_session, people):
    with pytest.raises(InvalidProject, match=r"wave2_students\.ses_band"):
        create_project(db_session, people["owner"], proposal(variables=["wave2_students.ses_band"]))


def test_end_date_must_follow_start_date_and_stay_within_five_years(db_session, people):
    with pytest.raises(InvalidProject, match="after start_date"):
        create_project(db_session, people["owner"], proposal(end_date=TODAY.isoformat()))
    with pytest.raises(InvalidProject, match="five years"):
        create_project(
            db_session, people["owner"], proposal(end_date=(TODAY + timedelta(days=6 * 365)).isoformat())
        )


def test_an_outdated_data_use_agreement_is_refused(db_session, people):
    with pytest.raises(ProjectRuleBroken, match="not the current one"):
        create_project(
            db_session,
            people["owner"],
            proposal(agreement={"version": "0.9", "sha256": "a" * 64, "accepted": True}),
        )
    current = service.current_agreement()
    with pytest.raises(ProjectRuleBroken, match="not the current one"):
        create_project(
            db_session,
            people["owner"],
            proposal(agreement={"version": current.version, "sha256": "b" * 64, "accepted": True}),
        )


def test_a_draft_accepted_under_an_agreement_since_replaced_cannot_be_submitted(
    db_session, people, monkeypatch
):
    project = create_project(db_session, people["owner"], proposal())
    newer = Agreement(version="2.0", sha256="c" * 64, text="new terms")
    monkeypatch.setattr(service, "current_agreement", lambda: newer)
    with pytest.raises(ProjectRuleBroken, match="outdated") as refused:
        submit_project(db_session, people["owner"], project.id)
    assert refused.value.code == "agreement_outdated"
    assert project.status == ProjectStatus.draft


def test_an_expired_training_attestation_cannot_be_submitted(db_session, people):
    expired = {"reference": "GDPR-TRAINING-1", "expires_on": (TODAY - timedelta(days=1)).isoformat()}
    project = create_project(db_session, people["owner"], proposal(training=expired))
    with pytest.raises(ProjectRuleBroken, match="training attestation expired") as refused:
        submit_project(db_session, people["owner"], project.id)
    assert refused.value.code == "training_expired"
    renewed = {"reference": "GDPR-TRAINING-2", "expires_on": (TODAY + timedelta(days=90)).isoformat()}
    update_project(
        db_session, people["owner"], project.id, ProjectUpdate.model_validate({"training": renewed})
    )
    assert submit_project(db_session, people["owner"], project.id).status == ProjectStatus.submitted


def test_only_the_owner_updates_and_submits(db_session, people):
    project = create_project(db_session, people["owner"], proposal())
    add_member(db_session, people["owner"], project.id, people["other_researcher"].account_id)
    with pytest.raises(NotAllowedOnProject, match="owner"):
        submit_project(db_session, people["other_researcher"], project.id)
    with pytest.raises(NotAllowedOnProject, match="owner"):
        update_project(
            db_session, people["other_researcher"], project.id, ProjectUpdate(title="A different title")
        )


def test_only_active_researcher_accounts_can_be_added_as_members(db_session, people):
    project = create_project(db_session, people["owner"], proposal())
    for candidate in (people["steward"].account_id, "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(InvalidProject, match="not an active researcher account"):
            add_member(db_session, people["owner"], project.id, candidate)
    add_member(db_session, people["owner"], project.id, people["other_researcher"].account_id)
    with pytest.raises(ProjectRuleBroken, match="already a member"):
        add_member(db_session, people["owner"], project.id, people["other_researcher"].account_id)
    assert get_project(db_session, people["other_researcher"], project.id).id == project.id


# --- states ---------------------------------------------------------------------------------------


def test_full_life_of_a_project_leaves_one_ledger_entry_per_transition(db_session, people):
    project = create_project(db_session, people["owner"], proposal())
    submit_project(db_session, people["owner"], project.id)
    approve_project(db_session, people["dpo"], project.id, terms(), second_approval_epsilon=THRESHOLD)
    assert project.status == ProjectStatus.active  # starts today, so active on approval
    assert project.granted_epsilon == Decimal("1.0")
    assert project.allowed_datasets == ["wave1_students"]
    suspend_project(db_session, people["admin"], project.id, "Suspected misuse under review.")
    reinstate_project(db_session, people["dpo2"], project.id)
    close_project(db_session, people["owner"], project.id)
    assert project.status == ProjectStatus.closed

    entries = ledger(db_session, project.id)
    assert [e.action for e in entries] == [
        "project.created",
        "project.submitted",
        "project.approved",
        "project.activated",
        "project.suspended",
        "project.reinstated",
        "project.closed",
    ]
    assert all(e.project_id == project.id and e.target_id == project.id for e in entries)
    assert [(e.details.get("from_status"), e.details.get("to_status")) for e in entries[1:]] == [
        ("draft", "submitted"),
        ("submitted", "approved"),
        ("approved", "active"),
        ("active", "suspended"),
        ("suspended", "active"),
        ("active", "closed"),
    ]
    assert entries[2].details["epsilon"] == "1"
    assert entries[2].actor_id == people["dpo"].account_id


def test_suspension_takes_effect_immediately(db_session, people):
    project = _active(db_session, people)
    suspend_project(db_session, people["dpo"], project.id, "Breach of the agreement, clause 2.")
    db_session.expire_all()
    reloaded = get_project(db_session, people["owner"], project.id)
    assert reloaded.status == ProjectStatus.suspended
    assert reloaded.decision_note == "Breach of the agreement, clause 2."


def test_changes_requested_returns_the_proposal_to_its_owner_and_old_approvals_no_longer_count(
    db_session, people
):
    project = _submitted(db_session, people, requested_epsilon="5")
    approve_project(db_session, people["dpo"], project.id, terms("4"), second_approval_epsilon=THRESHOLD)
    request_changes(db_session, people["dpo2"], project.id, "Narrow the variables, please.")
    assert project.status == ProjectStatus.changes_requested
    update_project(db_session, people["owner"], project.id, ProjectUpdate(title="Narrower title"))
    assert project.status == ProjectStatus.draft
    submit_project(db_session, people["owner"], project.id)
    assert project.review_round == 2
    # The first round's approval does not count: one more approval is not enough for ε 4.
    approve_project(db_session, people["dpo2"], project.id, terms("4"), second_approval_epsilon=THRESHOLD)
    assert project.status == ProjectStatus.submitted
    assert [a for a, _ in actions(db_session, project.id)][-3:] == [
        "project.updated",
        "project.submitted",
        "project.approval_recorded",
    ]


def test_a_rejected_project_is_final(db_session, people):
    project = _submitted(db_session, people)
    reject_project(db_session, people["dpo"], project.id, "Out of the consortium's remit.")
    for attempt in (
        lambda: submit_project(db_session, people["owner"], project.id),
        lambda: approve_project(db_session, people["dpo"], project.id, terms()),
        lambda: close_project(db_session, people["owner"], project.id),
    ):
        with pytest.raises(IllegalTransition, match="project that is rejected"):
            attempt()


@pytest.mark.parametrize(
    ("state", "step", "message"),
    [
        ("draft", "approve", "cannot approve a project that is draft"),
        ("draft", "suspend", "cannot suspend a project that is draft"),
        ("submitted", "update", "cannot update a project that is submitted"),
        ("submitted", "submit", "cannot submit a project that is submitted"),
        ("submitted", "reinstate", "cannot reinstate a project that is submitted"),
        ("active", "reject", "cannot reject a project that is active"),
        ("active", "reinstate", "cannot reinstate a project that is active"),
        ("active", "member", "cannot add a member to a project that is active"),
        ("closed", "suspend", "cannot suspend a project that is closed"),
        ("closed", "close", "cannot close a project that is closed"),
    ],
)
def test_illegal_transitions_are_refused_naming_the_current_state(db_session, people, state, step, message):
    owner, dpo = people["owner"], people["dpo"]
    if state == "draft":
        project = create_project(db_session, owner, proposal())
    elif state == "submitted":
        project = _submitted(db_session, people)
    else:
        project = _active(db_session, people)
        if state == "closed":
            close_project(db_session, dpo, project.id)
    steps = {
        "approve": lambda: approve_project(db_session, dpo, project.id, terms()),
        "suspend": lambda: suspend_project(db_session, dpo, project.id, "Reason given."),
        "update": lambda: update_project(db_session, owner, project.id, ProjectUpdate(title="New title")),
        "submit": lambda: submit_project(db_session, owner, project.id),
        "reinstate": lambda: reinstate_project(db_session, dpo, project.id),
        "reject": lambda: reject_project(db_session, dpo, project.id, "Reason given."),
        "member": lambda: add_member(db_session, owner, project.id, people["other_researcher"].account_id),
        "close": lambda: close_project(db_session, owner, project.id),
    }
    before = project.status
    with pytest.raises(IllegalTransition, match=message) as refused:
        steps[step]()
    assert refused.value.status_code == 409
    assert refused.value.extra["current_status"] == before
    assert project.status == before


def test_refused_attempts_leave_a_denied_ledger_entry(db_session, people):
    project = create_project(db_session, people["owner"], proposal())
    with pytest.raises(IllegalTransition):
        approve_project(db_session, people["dpo"], project.id, terms())
    db_session.commit()  # denied entries are written once the request's transaction ends
    denied = [e for e in ledger(db_session, project.id) if e.outcome == "denied"]
    assert [(e.action, e.details) for e in denied] == [("project.approved", {"error": "illegal_transition"})]
    assert denied[0].actor_id == people["dpo"].account_id


def test_only_the_owner_or_the_dpo_closes_a_project(db_session, people):
    project = _active(db_session, people)
    for outsider in (people["admin"], people["legal"]):
        with pytest.raises(NotAllowedOnProject, match="owner or the DPO"):
            close_project(db_session, outsider, project.id)
    assert close_project(db_session, people["dpo"], project.id).status == ProjectStatus.closed


def test_a_reinstated_project_past_its_end_date_stays_suspended(db_session, people):
    project = _active(db_session, people)
    suspend_project(db_session, people["dpo"], project.id, "Audit pending.")
    later = project.granted_end_date + timedelta(days=1)
    with pytest.raises(ProjectRuleBroken, match="end date has passed"):
        reinstate_project(db_session, people["dpo"], project.id, today=later)
    assert project.status == ProjectStatus.suspended


def test_a_project_suspended_before_its_start_is_reinstated_as_approved(db_session, people):
    start = TODAY + timedelta(days=5)
    project = _submitted(
        db_session, people, start_date=start.isoformat(), end_date=(start + timedelta(days=100)).isoformat()
    )
    approve_project(db_session, people["dpo"], project.id, terms(end_date=start + timedelta(days=50)))
    suspend_project(db_session, people["dpo"], project.id, "Ethics approval withdrawn.")
    assert project.status == ProjectStatus.suspended
    reinstate_project(db_session, people["dpo2"], project.id)
    assert project.status == ProjectStatus.approved


# --- approval -------------------------------------------------------------------------------------


def test_nobody_approves_a_project_they_belong_to(db_session, people):
    dpo_researcher = make_principal(db_session, Role.researcher, Role.dpo)
    own = create_project(db_session, dpo_researcher, proposal())
    submit_project(db_session, dpo_researcher, own.id)
    with pytest.raises(NotAllowedOnProject, match="you belong to this project"):
        approve_project(db_session, dpo_researcher, own.id, terms())

    joined = create_project(db_session, people["owner"], proposal())
    add_member(db_session, people["owner"], joined.id, dpo_researcher.account_id)
    submit_project(db_session, people["owner"], joined.id)
    for decide in (
        lambda: approve_project(db_session, dpo_researcher, joined.id, terms()),
        lambda: reject_project(db_session, dpo_researcher, joined.id, "Not good enough."),
        lambda: request_changes(db_session, dpo_researcher, joined.id, "Change it."),
    ):
        with pytest.raises(NotAllowedOnProject, match="you belong to this project"):
            decide()
    assert approve_project(db_session, people["dpo"], joined.id, terms()).status == ProjectStatus.active


def test_a_grant_above_the_threshold_needs_a_second_different_approver(db_session, people):
    project = _submitted(db_session, people, requested_epsilon="3")
    approve_project(db_session, people["dpo"], project.id, terms("3"), second_approval_epsilon=THRESHOLD)
    assert project.status == ProjectStatus.submitted
    assert project.granted_epsilon is None
    view = service.view(db_session, project, THRESHOLD)
    assert (len(view.approvals), view.approvals_required) == (1, 2)

    with pytest.raises(ProjectRuleBroken, match="someone else") as refused:
        approve_project(db_session, people["dpo"], project.id, terms("3"), second_approval_epsilon=THRESHOLD)
    assert refused.value.code == "same_approver"

    approve_project(db_session, people["admin"], project.id, terms("3"), second_approval_epsilon=THRESHOLD)
    assert project.status == ProjectStatus.active
    assert project.granted_epsilon == Decimal("3")
    entries = ledger(db_session, project.id)
    recorded = [(e.action, e.details.get("approvals"), e.details.get("approvals_required"))
                for e in entries if "approv" in e.action and e.outcome == "ok"]  # fmt: skip
    assert recorded == [("project.approval_recorded", 1, 2), ("project.approved", 2, 2)]
    denied = [(e.action, e.details) for e in entries if e.outcome == "denied"]
    assert denied == [("project.approved", {"error": "same_approver"})]


def test_a_grant_at_the_threshold_needs_one_approver(db_session, people):
    project = _submitted(db_session, people, requested_epsilon="2")
    approve_project(db_session, people["dpo"], project.id, terms("2.0"), second_approval_epsilon=THRESHOLD)
    assert project.status == ProjectStatus.active


def test_the_second_approval_must_confirm_the_terms_of_the_first(db_session, people):
    project = _submitted(db_session, people, requested_epsilon="3")
    approve_project(db_session, people["dpo"], project.id, terms("3"), second_approval_epsilon=THRESHOLD)
    with pytest.raises(ProjectRuleBroken, match="confirm the terms"):
        approve_project(
            db_session, people["dpo2"], project.id, terms("2.5"), second_approval_epsilon=THRESHOLD
        )
    assert project.status == ProjectStatus.submitted


def test_the_first_approval_must_come_from_the_dpo(db_session, people):
    project = _submitted(db_session, people)
    with pytest.raises(NotAllowedOnProject, match="from the DPO"):
        approve_project(db_session, people["admin"], project.id, terms())


def test_granted_budget_and_scope_never_exceed_the_request(db_session, people):
    project = _submitted(db_session, people)
    dpo = people["dpo"]
    with pytest.raises(InvalidProject, match=r"exceeds the requested 1\.5"):
        approve_project(db_session, dpo, project.id, terms("1.6"))
    with pytest.raises(InvalidProject, match="datasets not requested"):
        approve_project(db_session, dpo, project.id, terms(datasets=["wave1_students", "wave2_students"]))
    with pytest.raises(InvalidProject, match="variables not requested"):
        approve_project(db_session, dpo, project.id, terms(variables=["wave1_students.ethnicity"]))
    with pytest.raises(InvalidProject, match="belong to a granted dataset"):
        approve_project(db_session, dpo, project.id, terms(variables=["wave1_teachers.years_experience"]))
    with pytest.raises(InvalidProject, match="not be later than the requested"):
        approve_project(db_session, dpo, project.id, terms(end_date=TODAY + timedelta(days=400)))
    assert project.status == ProjectStatus.submitted


def test_approval_before_the_start_date_waits_and_the_job_activates_on_the_day(db_session, people):
    start = TODAY + timedelta(days=10)
    project = _submitted(
        db_session, people, start_date=start.isoformat(), end_date=(start + timedelta(days=100)).isoformat()
    )
    approve_project(
        db_session,
        people["dpo"],
        project.id,
        terms(end_date=start + timedelta(days=50)),
        second_approval_epsilon=THRESHOLD,
    )
    assert project.status == ProjectStatus.approved
    assert run_lifecycle(db_session, today=start - timedelta(days=1)).activated == []
    assert project.id in run_lifecycle(db_session, today=start).activated
    assert project.status == ProjectStatus.active
    assert ledger(db_session, project.id)[-1].actor_role == "system"


# --- expiry ---------------------------------------------------------------------------------------


def test_the_expiry_job_expires_projects_past_their_end_date_and_is_idempotent(db_session, people):
    active = _active(db_session, people)
    suspended = _active(db_session, people)
    suspend_project(db_session, people["dpo"], suspended.id, "Under review.")
    end = active.granted_end_date

    assert run_lifecycle(db_session, today=end).expired == []  # the end date is the last day of access
    assert active.status == ProjectStatus.active

    first = run_lifecycle(db_session, today=end + timedelta(days=1))
    assert set(first.expired) >= {active.id, suspended.id}
    assert active.status == suspended.status == ProjectStatus.expired
    second = run_lifecycle(db_session, today=end + timedelta(days=1))
    assert active.id not in second.expired
    assert suspended.id not in second.expired
    assert [a for a, _ in actions(db_session, active.id)].count("project.expired") == 1
    with pytest.raises(IllegalTransition, match="project that is expired"):
        suspend_project(db_session, people["dpo"], active.id, "Too late.")


def test_access_ends_after_the_end_date_even_before_the_job_runs(db_session, people):
    project = _active(db_session, people)
    end = project.granted_end_date
    assert grants_access(project, TODAY)
    assert grants_access(project, end)
    assert not grants_access(project, end + timedelta(days=1))
    suspend_project(db_session, people["dpo"], project.id, "Paused.")
    assert not grants_access(project, TODAY)


def test_the_lifecycle_job_is_scheduled():
    import access.projects.tasks  # noqa: F401 - registers the job

    job = PERIODIC_JOBS["projects-lifecycle"]
    assert job.task == "default.projects_lifecycle"
    assert job.every <= timedelta(hours=1)


def test_the_lifecycle_task_runs_on_its_own_session(components):
    from access.projects.tasks import apply_project_lifecycle

    assert apply_project_lifecycle.apply().get() == {"activated": 0, "expired": 0}


# --- scoping --------------------------------------------------------------------------------------


def test_a_researcher_cannot_see_another_researchers_project(db_session, people):
    project = create_project(db_session, people["owner"], proposal())
    stranger = people["other_researcher"]
    with pytest.raises(ProjectNotFound):
        get_project(db_session, stranger, project.id)
    with pytest.raises(ProjectNotFound):
        close_project(db_session, stranger, project.id)
    rows, total = list_projects(db_session, stranger)
    assert (list(rows), total) == ([], 0)


def test_dpo_admin_and_legal_reviewer_see_every_project_and_stewards_see_none(db_session, people):
    first = create_project(db_session, people["owner"], proposal())
    second = create_project(db_session, people["other_researcher"], proposal())
    for reviewer in ("dpo", "admin", "legal"):
        rows, _ = list_projects(db_session, people[reviewer], limit=100)
        assert {first.id, second.id} <= {p.id for p in rows}
    rows, total = list_projects(db_session, people["steward"])
    assert (list(rows), total) == ([], 0)
    with pytest.raises(ProjectNotFound):
        get_project(db_session, people["steward"], first.id)
    mine, total = list_projects(db_session, people["owner"])
    assert ([p.id for p in mine], total) == ([first.id], 1)


def test_listing_is_paginated_and_filtered_by_status(db_session, people):
    ids = [create_project(db_session, people["owner"], proposal()).id for _ in range(3)]
    submit_project(db_session, people["owner"], ids[0])
    page, total = list_projects(db_session, people["owner"], limit=2, offset=0)
    rest, _ = list_projects(db_session, people["owner"], limit=2, offset=2)
    assert (total, len(page), len(rest)) == (3, 2, 1)
    assert {p.id for p in [*page, *rest]} == set(ids)
    submitted, count = list_projects(db_session, people["owner"], status=ProjectStatus.submitted)
    assert ([p.id for p in submitted], count) == ([ids[0]], 1)


# --- concurrency ----------------------------------------------------------------------------------


def test_two_simultaneous_second_approvals_approve_the_project_once(monkeypatch):
    """Runs on a database of its own: the race needs two committed, concurrent transactions."""
    import threading
    import time

    from sqlalchemy import func, select

    from access.audit.models import AuditEntry
    from access.audit.service import chain_queued
    from access.projects import repository
    from infra.db import make_engine, make_session_factory, session_scope
    from infra.migrate import upgrade
    from tests.conftest import recreate_database

    engine = make_engine(recreate_database("enclave_test_project_race"), pool_size=4)
    try:
        upgrade(engine)
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            owner = make_principal(session, Role.researcher)
            first, second, third = (
                make_principal(session, role) for role in (Role.dpo, Role.dpo, Role.admin)
            )
            project = create_project(session, owner, proposal(requested_epsilon="3"))
            submit_project(session, owner, project.id)
            approve_project(session, first, project.id, terms("3"), second_approval_epsilon=THRESHOLD)
            project_id = project.id

        slow_approvals = repository.approvals

        def approvals_after_a_pause(*args, **kwargs):
            time.sleep(0.3)  # widen the window in which an unlocked read would see "submitted"
            return slow_approvals(*args, **kwargs)

        monkeypatch.setattr(repository, "approvals", approvals_after_a_pause)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def confirm(approver):
            barrier.wait()
            try:
                with session_scope(factory) as session:
                    approve_project(
                        session, approver, project_id, terms("3"), second_approval_epsilon=THRESHOLD
                    )
                outcomes.append("approved")
            except IllegalTransition:
                outcomes.append("refused")

        threads = [threading.Thread(target=confirm, args=(p,)) for p in (second, third)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert sorted(outcomes) == ["approved", "refused"]
        with factory() as session:
            chain_queued(session)  # entries are chained in the background after each commit
            approved = session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.project_id == project_id, AuditEntry.action == "project.approved")
                .where(AuditEntry.outcome == "ok")
            )
            assert approved == 1
            assert len(repository.approvals(session, project_id)) == 2
    finally:
        engine.dispose()
