"""Releasing differentially private answers: who may ask, what it costs, and the one release transaction.

A query goes through three steps:

1. **prepare** (no data, no budget): the caller is a member of the project; the project is approved or
   active and within its dates; the dataset is one of the project's and published; the engine's
   ``check`` accepts the spec with the project's approved variables of that dataset; ε is the spec's
   (or derived from its target accuracy) rounded up to the budget's decimals.
2. **release** (one transaction): the frame comes from the decrypted-frame cache and loses the
   subjects whose consent for the dataset's purpose is no longer granted; then the project's row is
   locked (``budget.lock_project``); an identical earlier release (same spec, version and consenting
   subjects) is returned at no cost; otherwise spent + ε ≤ granted (and the researcher's cap) is
   checked, the spend and the release are written, the OpenDP measurement runs, and everything
   commits together. Any failure rolls back both: nothing is spent that was not released.
3. **refusals** leave a ``dp.query_refused`` entry in a transaction of their own, whatever happens
   to the request: the spec hash as target, and as details the reason, the dataset (if the catalog
   has it) and version, the spec hash and the ε asked (the spec's, or the one derived from its
   target accuracy once it was; left out when it cannot be known, e.g. a spec giving both ε and an
   accuracy). A refused preview leaves none: previews are free and live, and would flood the ledger.

Large datasets run the same release on the worker (``dp_queries.tasks``) as a ``QueryJob``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from access.audit.actions import (
    DecimalText,
    Details,
    FailureDetails,
    Identifier,
    Role,
    Sha256Hex,
    register_action,
)
from access.audit.service import Actor, record, record_denied
from access.principal import Principal
from access.projects import repository
from access.projects.exceptions import ProjectNotFound
from access.projects.models import ProjectStatus, ResearchProject
from access.projects.rules import utc_today
from dp_queries import budget
from dp_queries.accuracy import preview
from dp_queries.consenting import consenting
from dp_queries.engine import release
from dp_queries.models import DpRelease, JobStatus, QueryJob, ResearcherCap
from dp_queries.schemas import BudgetRead, ResearcherBudget, SpendPoint
from dp_queries.spec import QuerySpec, check, spec_hash
from enclave.datasets.frames import frames
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.datasets.schemas import DatasetSchema
from enclave.objects.store import EncryptedStore
from infra.errors import EnclaveError, Forbidden, InvalidField, NotFound, ReasonedConflict
from infra.logging import get_logger
from infra.outbox import enqueue

log = get_logger(__name__)

RUN_TASK = "queries.dp_release"
"""The worker's task that runs a queued query (``dp_queries.tasks``)."""
USABLE = frozenset({ProjectStatus.approved.value, ProjectStatus.active.value})
EPSILON_TOLERANCE = 1e-9
"""Relative slack when comparing OpenDP's float privacy loss with the exact ε charged."""


class ReleaseDetails(Details):
    """Ledger details of a release, a replay or a queued query: what was asked and what it cost."""

    dataset: Identifier
    version: int | None = None
    spec_hash: Sha256Hex
    epsilon: DecimalText
    release_id: Identifier | None = None
    job_id: Identifier | None = None


class RefusalDetails(FailureDetails):
    """Ledger details of a refused release: the reason, and what was asked as far as it is known."""

    dataset: Identifier | None = None
    version: int | None = None
    spec_hash: Sha256Hex
    epsilon: DecimalText | None = None


class CapDetails(Details):
    """Ledger details of a researcher's cap within a project."""

    member_id: Identifier
    cap: DecimalText | None = None


DP_QUERY_RELEASED = register_action("dp.query_released", ReleaseDetails)
DP_QUERY_REPLAYED = register_action("dp.query_replayed", ReleaseDetails)
DP_QUERY_REFUSED = register_action("dp.query_refused", ReleaseDetails, failure=RefusalDetails)
DP_QUERY_QUEUED = register_action("dp.query_queued", ReleaseDetails)
DP_CAP_SET = register_action("dp.researcher_cap_set", CapDetails)


class ProjectNotUsable(ReasonedConflict):
    """The project exists and the caller belongs to it, but it does not allow queries now."""


class JobNotFound(NotFound):
    """No such job, or not one of the caller's projects."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found")


class ReleaseNotFound(NotFound):
    """No such release, or not one of the caller's projects."""

    def __init__(self, release_id: str) -> None:
        super().__init__(f"release {release_id} not found")


@dataclass(frozen=True)
class Prepared:
    """A query that passed every rule but the budget: its project, data, spec and price."""

    project_id: str
    account_id: str
    dataset_id: str
    version: int
    rows: int
    schema: DatasetSchema
    spec: QuerySpec
    spec_hash: str
    epsilon: Decimal
    statistics: list[dict[str, Any]]


@dataclass(frozen=True)
class Released:
    """A release answered to a researcher: new (``charged`` > 0) or an identical earlier one."""

    release: DpRelease
    reused: bool
    charged: Decimal
    remaining: Decimal


# --- preparing ------------------------------------------------------------------------------------


def usable_project(
    session: Session, account_id: str, project_id: str, today: date | None = None
) -> ResearchProject:
    """The project if the account belongs to it and it allows queries today; 404 or 409 otherwise."""
    project = session.get(ResearchProject, project_id)
    if project is None or not repository.is_member(session, project_id, account_id):
        raise ProjectNotFound(project_id)
    require_usable(project, today)
    return project


def require_usable(project: ResearchProject, today: date | None = None) -> None:
    """Refuse with 409 unless the project is approved or active, within its dates, with a grant."""
    today = today or utc_today()
    if project.status not in USABLE or project.granted_epsilon is None or project.granted_end_date is None:
        raise ProjectNotUsable(
            f"the project is {project.status}: queries need an approved or active project",
            code="project_not_active",
        )
    if today < project.start_date:
        raise ProjectNotUsable(
            f"the project starts on {project.start_date.isoformat()}", code="project_not_started"
        )
    if today > project.granted_end_date:
        raise ProjectNotUsable(
            f"the project's access ended on {project.granted_end_date.isoformat()}", code="project_ended"
        )


def _published(session: Session, dataset_id: str, version: int | None) -> DatasetVersion:
    query = select(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset_id, DatasetVersion.state == VersionState.published.value
    )
    if version is not None:
        query = query.where(DatasetVersion.version == version)
    found = session.scalars(query.order_by(DatasetVersion.version.desc()).limit(1)).one_or_none()
    if found is None:
        if version is None:
            raise InvalidField("spec.dataset", f"{dataset_id} has no published version", code="no_version")
        raise InvalidField(
            "spec.version", f"{dataset_id} has no published version {version}", code="unknown_version"
        )
    return found


def approved_variables(project: ResearchProject, dataset_id: str) -> list[str]:
    """The project's approved variables of one dataset, by name (the grant lists ``dataset.variable``)."""
    prefix = f"{dataset_id}."
    return [v[len(prefix) :] for v in project.allowed_variables or [] if v.startswith(prefix)]


def prepare(
    session: Session, account_id: str, project_id: str, spec: QuerySpec, today: date | None = None
) -> Prepared:
    """Every rule a query must pass before it may spend: membership, project, dataset, variables, ε."""
    project = usable_project(session, account_id, project_id, today)
    if spec.dataset not in (project.allowed_datasets or []):
        raise InvalidField(
            "spec.dataset",
            f"{spec.dataset} is not one of the project's approved datasets",
            code="dataset_not_allowed",
        )
    dataset = session.get(Dataset, spec.dataset)
    if dataset is None or dataset.destroyed_at is not None:
        raise InvalidField("spec.dataset", f"{spec.dataset} is not in the catalog", code="unknown_dataset")
    version = _published(session, dataset.id, spec.version)
    schema = DatasetSchema.model_validate(version.schema)
    check(spec, schema, approved_variables(project, dataset.id))
    expected = preview(spec, schema)
    epsilon = budget.charge(Decimal(expected.epsilon))
    if epsilon <= 0:
        raise InvalidField("spec.epsilon", "must be greater than 0", code="epsilon_not_positive")
    return Prepared(
        project_id=project.id,
        account_id=account_id,
        dataset_id=dataset.id,
        version=version.version,
        rows=version.rows or 0,
        schema=schema,
        spec=spec,
        spec_hash=spec_hash(spec),
        epsilon=epsilon,
        statistics=[dict(s) for s in expected.statistics],
    )


LEDGER_EPSILON_LIMIT = Decimal(10) ** 12
"""An ε the spec asks is written in a refusal's entry below this (the ledger's decimal text)."""


def _catalog(session: Session, spec: QuerySpec) -> str | None:
    """The spec's dataset if the catalog has it (None otherwise, or if the session cannot tell)."""
    try:
        with session.no_autoflush:
            found = session.get(Dataset, spec.dataset)
    except SQLAlchemyError:
        return None
    return found.id if found is not None else None


@dataclass
class Asked:
    """What a release asks, as far as it is known when it is refused (``note`` adds the prepared query)."""

    spec: QuerySpec
    prepared: Prepared | None = None

    def note(self, prepared: Prepared) -> Prepared:
        """Remember the prepared query (its version and charged ε, derived if the spec gave an accuracy)."""
        self.prepared = prepared
        return prepared

    def epsilon(self) -> str | None:
        """The ε asked, as the budget would charge it: the prepared one, else the spec's if it gives one
        (and no accuracy besides) that is a positive number; None when it cannot be known."""
        if self.prepared is not None:
            return budget.epsilon_text(self.prepared.epsilon)
        value = self.spec.epsilon
        if value is None or self.spec.accuracy is not None or not value.is_finite():
            return None
        if not Decimal(0) < value < LEDGER_EPSILON_LIMIT:
            return None
        return budget.epsilon_text(budget.charge(value))

    def details(self, session: Session, error: str) -> RefusalDetails:
        """The refusal's ledger details. The dataset is written only if it is one of the catalog's:
        whatever else a researcher typed there stays out of the ledger."""
        return RefusalDetails(
            error=error,
            dataset=self.prepared.dataset_id if self.prepared is not None else _catalog(session, self.spec),
            version=self.prepared.version if self.prepared is not None else self.spec.version,
            spec_hash=spec_hash(self.spec),
            epsilon=self.epsilon(),
        )


@contextmanager
def refusals(session: Session, actor: Actor, project_id: str, spec: QuerySpec) -> Iterator[Asked]:
    """Leave a ``dp.query_refused`` entry (own transaction) for any refusal raised inside, then re-raise.

    Pass the prepared query to the yielded :class:`Asked` (``asked.note(prepare(...))``) so that a
    refusal after preparing records the ε derived from a target accuracy.
    """
    asked = Asked(spec)
    try:
        yield asked
    except EnclaveError as error:
        code = str(getattr(error, "code", None) or error.extra.get("reason") or error.type_slug)
        record_denied(
            session,
            actor,
            DP_QUERY_REFUSED,
            details=asked.details(session, code),
            target_type="dp_query",
            target_id=spec_hash(spec),
            project_id=project_id,
        )
        raise


def researcher(account_id: str) -> Actor:
    """The ledger's actor for a researcher's query run by the worker."""
    return Actor(account_id, Role.researcher)


# --- releasing ------------------------------------------------------------------------------------


def _identical(session: Session, prepared: Prepared, digest: str) -> DpRelease | None:
    return session.scalars(
        select(DpRelease).where(
            DpRelease.project_id == prepared.project_id,
            DpRelease.dataset_id == prepared.dataset_id,
            DpRelease.version == prepared.version,
            DpRelease.spec_hash == prepared.spec_hash,
            DpRelease.consenting_digest == digest,
        )
    ).one_or_none()


def release_prepared(
    session: Session, actor: Actor, prepared: Prepared, store: EncryptedStore, *, job_id: str | None = None
) -> Released:
    """Run the release transaction for a prepared query (the caller commits or rolls back).

    With ``job_id``, a job that another run already finished returns its release instead.
    """
    loaded = frames.get(session, store, prepared.dataset_id, prepared.version)
    kept = consenting(session, loaded)
    project = budget.lock_project(session, prepared.project_id)
    if project is None:
        raise ProjectNotFound(prepared.project_id)
    # Read again under the lock: a suspension or expiry committed meanwhile stops the release.
    # (Membership was checked by ``prepare``; members are never removed from a granted project.)
    require_usable(project)
    if job_id is not None:
        job = session.get(QueryJob, job_id, populate_existing=True)
        if job is not None and job.status == JobStatus.done.value and job.release_id is not None:
            done = session.get(DpRelease, job.release_id)
            if done is not None:
                current = budget.balance(session, project, prepared.account_id)
                return Released(done, reused=True, charged=Decimal(0), remaining=current.remaining)
    current = budget.balance(session, project, prepared.account_id)
    details = {"dataset": prepared.dataset_id, "version": prepared.version, "spec_hash": prepared.spec_hash}
    earlier = _identical(session, prepared, kept.digest)
    if earlier is not None:
        record(
            session,
            actor,
            DP_QUERY_REPLAYED,
            target_type="dp_release",
            target_id=earlier.id,
            project_id=prepared.project_id,
            details=ReleaseDetails(**details, epsilon="0", release_id=earlier.id, job_id=job_id),
        )
        return Released(earlier, reused=True, charged=Decimal(0), remaining=current.remaining)
    budget.require_room(current, prepared.epsilon)
    now = datetime.now(UTC)
    row = DpRelease(
        id=str(uuid.uuid4()),
        project_id=prepared.project_id,
        account_id=prepared.account_id,
        dataset_id=prepared.dataset_id,
        version=prepared.version,
        spec=prepared.spec.model_dump(mode="json"),
        spec_hash=prepared.spec_hash,
        consenting_digest=kept.digest,
        epsilon=prepared.epsilon,
        result={},
        created_at=now,
    )
    session.add(row)
    # The release is pending in this transaction while the measurement runs, and its spend is
    # written right after it, before the commit: if anything fails, the rollback takes both away.
    result = release(
        prepared.spec,
        prepared.schema,
        kept.frame,
        prepared.epsilon,
        # Same version and same consenting students: the same rows, handed to OpenDP only once.
        frame_key=f"{prepared.dataset_id}/{prepared.version}/{kept.digest}",
    )
    if float(result.epsilon_spent) > float(prepared.epsilon) * (1 + EPSILON_TOLERANCE):
        raise RuntimeError("the executed measurement's privacy loss exceeds the ε charged")
    row.result = result.to_json()
    session.flush()
    budget.record_spend(
        session,
        project_id=prepared.project_id,
        account_id=prepared.account_id,
        release_id=row.id,
        epsilon=prepared.epsilon,
        at=now,
    )
    session.flush()
    record(
        session,
        actor,
        DP_QUERY_RELEASED,
        target_type="dp_release",
        target_id=row.id,
        project_id=prepared.project_id,
        details=ReleaseDetails(
            **details, epsilon=budget.epsilon_text(prepared.epsilon), release_id=row.id, job_id=job_id
        ),
    )
    log.info("dp.query_released", project_id=prepared.project_id, release_id=row.id)
    return Released(
        row, reused=False, charged=prepared.epsilon, remaining=current.remaining - prepared.epsilon
    )


def release_query(
    session: Session,
    principal: Principal,
    project_id: str,
    spec: QuerySpec,
    store: EncryptedStore,
) -> Released:
    """Prepare and release in the caller's transaction; refusals leave their ledger entry."""
    with refusals(session, principal.actor, project_id, spec) as asked:
        prepared = asked.note(prepare(session, principal.account_id, project_id, spec))
        return release_prepared(session, principal.actor, prepared, store)


# --- jobs -----------------------------------------------------------------------------------------


def queue_job(session: Session, principal: Principal, prepared: Prepared) -> QueryJob:
    """Store a job for the worker; it is sent once the caller's transaction commits."""
    job = QueryJob(
        project_id=prepared.project_id,
        account_id=prepared.account_id,
        dataset_id=prepared.dataset_id,
        spec=prepared.spec.model_dump(mode="json"),
        spec_hash=prepared.spec_hash,
        status=JobStatus.queued.value,
        attempts=0,
    )
    session.add(job)
    session.flush()
    record(
        session,
        principal.actor,
        DP_QUERY_QUEUED,
        target_type="dp_query_job",
        target_id=job.id,
        project_id=prepared.project_id,
        details=ReleaseDetails(
            dataset=prepared.dataset_id,
            version=prepared.version,
            spec_hash=prepared.spec_hash,
            epsilon=budget.epsilon_text(prepared.epsilon),
            job_id=job.id,
        ),
    )
    enqueue(session, RUN_TASK, job.id)
    return job


def problem_of(error: EnclaveError) -> dict[str, Any]:
    """What a failed job tells its researcher: status, reason and message (no data)."""
    return {
        "status": error.status_code,
        "title": error.title,
        "detail": error.detail,
        **{k: v for k, v in error.extra.items() if isinstance(v, str | int | float | list)},
    }


def start_job(session: Session, job_id: str) -> QueryJob | None:
    """Mark a queued (or crashed) job as running and count the attempt; None when it needs no run."""
    job = session.get(QueryJob, job_id, with_for_update=True)
    if job is None or job.status in (JobStatus.done.value, JobStatus.failed.value):
        return None
    job.status = JobStatus.running.value
    job.attempts += 1
    return job


def run_job_release(session: Session, job_id: str, store: EncryptedStore) -> QueryJob:
    """The job's release transaction: prepare again (rules may have changed), release, mark done."""
    job = session.get(QueryJob, job_id)
    if job is None:
        raise JobNotFound(job_id)
    spec = QuerySpec.model_validate(job.spec)
    actor = researcher(job.account_id)
    with refusals(session, actor, job.project_id, spec) as asked:
        prepared = asked.note(prepare(session, job.account_id, job.project_id, spec))
        released = release_prepared(session, actor, prepared, store, job_id=job.id)
    job = session.get(QueryJob, job_id, populate_existing=True) or job
    job.status = JobStatus.done.value
    job.release_id = released.release.id
    job.error = None
    job.finished_at = datetime.now(UTC)
    session.flush()
    return job


def fail_job(session: Session, job_id: str, error: EnclaveError) -> None:
    """Record a refusal on the job: it is finished and will not be retried."""
    job = session.get(QueryJob, job_id, with_for_update=True)
    if job is None or job.status == JobStatus.done.value:
        return
    job.status = JobStatus.failed.value
    job.error = problem_of(error)
    job.finished_at = datetime.now(UTC)


def requeue_job(session: Session, job_id: str, error: BaseException, *, give_up: bool) -> None:
    """After an unexpected failure: back to queued for a retry (or failed for good after the last one)."""
    job = session.get(QueryJob, job_id, with_for_update=True)
    if job is None or job.status == JobStatus.done.value:
        return
    job.last_error = type(error).__name__
    if give_up:
        job.status = JobStatus.failed.value
        job.error = {"status": 500, "title": "Internal error", "detail": "the query failed; ask again later"}
        job.finished_at = datetime.now(UTC)
    else:
        job.status = JobStatus.queued.value


def stale_jobs(session: Session, older_than: datetime) -> list[str]:
    """Jobs left queued or running since before ``older_than`` (their worker died): to be sent again."""
    return list(
        session.scalars(
            select(QueryJob.id).where(
                QueryJob.status.in_([JobStatus.queued.value, JobStatus.running.value]),
                QueryJob.updated_at < older_than,
            )
        )
    )


# --- reading --------------------------------------------------------------------------------------


def visible_project(session: Session, principal: Principal, project_id: str) -> ResearchProject:
    """A project whose releases and budget the principal may read: members, and the DPO."""
    project = session.get(ResearchProject, project_id)
    if project is None:
        raise ProjectNotFound(project_id)
    if principal.has(Role.dpo) or repository.is_member(session, project_id, principal.account_id):
        return project
    raise ProjectNotFound(project_id)


def get_release(session: Session, principal: Principal, release_id: str) -> DpRelease:
    """One release of a project the principal may read."""
    row = session.get(DpRelease, release_id)
    if row is None:
        raise ReleaseNotFound(release_id)
    try:
        visible_project(session, principal, row.project_id)
    except ProjectNotFound:
        raise ReleaseNotFound(release_id) from None
    return row


def list_releases(
    session: Session, principal: Principal, project_id: str, *, limit: int, offset: int
) -> tuple[Sequence[DpRelease], int]:
    """A page of a project's releases, newest first, and how many there are."""
    visible_project(session, principal, project_id)
    condition = DpRelease.project_id == project_id
    total = session.scalar(select(func.count()).select_from(DpRelease).where(condition)) or 0
    rows = session.scalars(
        select(DpRelease)
        .where(condition)
        .order_by(DpRelease.created_at.desc(), DpRelease.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return rows, total


def get_job(session: Session, principal: Principal, job_id: str) -> QueryJob:
    """One job of a project the researcher belongs to."""
    job = session.get(QueryJob, job_id)
    if job is None or not repository.is_member(session, job.project_id, principal.account_id):
        raise JobNotFound(job_id)
    return job


def set_cap(
    session: Session, principal: Principal, project_id: str, account_id: str, cap: Decimal | None
) -> ResearcherCap | None:
    """Set (or remove, with None) a member's cap within the project: the DPO or the project's owner."""
    project = visible_project(session, principal, project_id)
    owner = repository.is_member(session, project_id, principal.account_id) and (
        project.owner_id == principal.account_id
    )
    if not (principal.has(Role.dpo) or owner):
        raise Forbidden(
            "only the DPO or the project's owner sets a researcher's cap", extra={"reason": "owner_only"}
        )
    if not repository.is_member(session, project_id, account_id):
        raise InvalidField(
            "account_id", "is not a member of the project", code="not_a_member", location="path"
        )
    row = session.get(ResearcherCap, (project_id, account_id))
    if cap is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        row = ResearcherCap(
            project_id=project_id, account_id=account_id, cap=cap, set_by=principal.account_id
        )
        session.add(row)
    else:
        row.cap = cap
        row.set_by = principal.account_id
        row.set_at = datetime.now(UTC)
    session.flush()
    record(
        session,
        principal.actor,
        DP_CAP_SET,
        target_type="project",
        target_id=project_id,
        project_id=project_id,
        details=CapDetails(member_id=account_id, cap=None if cap is None else budget.epsilon_text(cap)),
    )
    return None if cap is None else row


def budget_of(session: Session, project: ResearchProject) -> BudgetRead:
    """A project's budget: granted, spent, remaining, per member (with caps) and every spend over time."""
    return budgets_of(session, [project])[0]


def budgets_of(session: Session, projects: Sequence[ResearchProject]) -> list[BudgetRead]:
    """Budgets of several projects in three queries."""
    ids = [p.id for p in projects]
    entries = budget.spends(session, ids)
    members = repository.members_of(session, ids)
    caps = (
        {
            (c.project_id, c.account_id): c.cap
            for c in session.scalars(select(ResearcherCap).where(ResearcherCap.project_id.in_(ids)))
        }
        if ids
        else {}
    )
    answers = []
    for project in projects:
        granted = project.granted_epsilon or Decimal(0)
        total = Decimal(0)
        points = []
        per_member: dict[str, Decimal] = {m.account_id: Decimal(0) for m in members[project.id]}
        for entry in (e for e in entries if e.project_id == project.id):
            total += entry.epsilon
            per_member[entry.account_id] = per_member.get(entry.account_id, Decimal(0)) + entry.epsilon
            points.append(
                SpendPoint(
                    at=entry.spent_at,
                    account_id=entry.account_id,
                    release_id=entry.release_id,
                    epsilon=budget.epsilon_text(entry.epsilon),
                    cumulative=budget.epsilon_text(total),
                )
            )
        answers.append(
            BudgetRead(
                project_id=project.id,
                title=project.title,
                status=project.status,
                granted=budget.epsilon_text(granted),
                spent=budget.epsilon_text(total),
                remaining=budget.epsilon_text(max(granted - total, Decimal(0))),
                researchers=[
                    ResearcherBudget(
                        account_id=account,
                        spent=budget.epsilon_text(amount),
                        cap=None
                        if (cap := caps.get((project.id, account))) is None
                        else budget.epsilon_text(cap),
                    )
                    for account, amount in per_member.items()
                ],
                spends=points,
            )
        )
    return answers


def all_budgets(session: Session) -> list[BudgetRead]:
    """Every project that was granted a budget, newest approval first (the DPO's view)."""
    projects = session.scalars(
        select(ResearchProject)
        .where(ResearchProject.granted_epsilon.is_not(None))
        .order_by(ResearchProject.approved_at.desc(), ResearchProject.id)
    ).all()
    return budgets_of(session, projects)
