"""Privacy budgets: the project's granted ε, what its releases spent, and the lock that keeps them apart.

The authoritative budget is the database, never an OpenDP compositor. A release spends inside one
transaction that first locks the project's row, so releases of one project run one after another:

* on PostgreSQL ``SELECT … FOR NO KEY UPDATE`` on ``research_project`` (it excludes other releases
  of the project but not the foreign-key checks of rows that merely reference it, such as a job
  being queued); once the lock is granted, the next statements of the transaction (READ
  COMMITTED) see every spend committed by the previous holder;
* on SQLite a no-op ``UPDATE`` of the same row takes the database's single write lock first (its
  deferred transaction begins with that write, so its reads come after every committed spend).

Then spent + ε ≤ granted is checked in exact ``Decimal`` arithmetic (ε has ``EPSILON_PLACES``
decimals, like the grant), and the release and its spend are written in that same transaction: a
failure rolls both back, so nothing is spent that was not released.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from access.projects.models import EPSILON_PLACES, ResearchProject
from dp_queries.models import BudgetSpend, ResearcherCap
from infra.db import is_postgresql
from infra.errors import ReasonedConflict

QUANTUM = Decimal(1).scaleb(-EPSILON_PLACES)
"""The smallest ε a budget counts: 0.0001."""


def charge(epsilon: Decimal) -> Decimal:
    """ε as charged to a budget: rounded up to ``EPSILON_PLACES`` decimals (never down: never undercharge)."""
    return epsilon.quantize(QUANTUM, rounding=ROUND_CEILING)


def epsilon_text(value: Decimal) -> str:
    """ε as plain decimal text with ``EPSILON_PLACES`` decimals, as the API shows it."""
    return format(value.quantize(QUANTUM), "f")


class BudgetExhausted(ReasonedConflict):
    """The project (or the researcher's cap within it) has not enough ε left for this release."""

    def __init__(self, detail: str, *, code: str, requested: Decimal, remaining: Decimal) -> None:
        super().__init__(detail, code=code)
        self.extra.update(
            {"requested_epsilon": epsilon_text(requested), "remaining_epsilon": epsilon_text(remaining)}
        )


@dataclass(frozen=True)
class Balance:
    """A project's budget as one researcher sees it at one moment (inside the locked transaction)."""

    granted: Decimal
    spent: Decimal
    researcher_spent: Decimal
    researcher_cap: Decimal | None

    @property
    def remaining(self) -> Decimal:
        """ε the project has left."""
        return max(self.granted - self.spent, Decimal(0))

    @property
    def available(self) -> Decimal:
        """ε this researcher may still spend: the project's remainder, within their cap if any."""
        if self.researcher_cap is None:
            return self.remaining
        return max(min(self.remaining, self.researcher_cap - self.researcher_spent), Decimal(0))


def lock_project(session: Session, project_id: str) -> ResearchProject | None:
    """Lock the project's row for the rest of the transaction and return it (None if it does not exist)."""
    if not is_postgresql(session):
        # SQLite: begin with a write so this transaction holds the single write lock before it reads.
        session.execute(
            update(ResearchProject)
            .where(ResearchProject.id == project_id)
            .values(updated_at=ResearchProject.updated_at)  # unchanged; takes the lock
            .execution_options(synchronize_session=False)
        )
    query = select(ResearchProject).where(ResearchProject.id == project_id)
    if is_postgresql(session):
        query = query.with_for_update(of=ResearchProject, key_share=True)
    # populate_existing: the row may be in the session from before the lock; read it afresh.
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def spent(session: Session, project_id: str, account_id: str | None = None) -> Decimal:
    """ε spent by the project (by one researcher of it when ``account_id`` is given)."""
    query = select(func.coalesce(func.sum(BudgetSpend.epsilon), 0)).where(
        BudgetSpend.project_id == project_id
    )
    if account_id is not None:
        query = query.where(BudgetSpend.account_id == account_id)
    return Decimal(session.execute(query).scalar_one()).quantize(QUANTUM)


def cap_of(session: Session, project_id: str, account_id: str) -> Decimal | None:
    """The researcher's cap within the project, if one is set."""
    return session.scalar(
        select(ResearcherCap.cap).where(
            ResearcherCap.project_id == project_id, ResearcherCap.account_id == account_id
        )
    )


def balance(session: Session, project: ResearchProject, account_id: str) -> Balance:
    """The project's budget and the researcher's part of it (one statement)."""
    cap = (
        select(ResearcherCap.cap)
        .where(ResearcherCap.project_id == project.id, ResearcherCap.account_id == account_id)
        .scalar_subquery()
    )
    total, own, researcher_cap = session.execute(
        select(
            func.coalesce(func.sum(BudgetSpend.epsilon), 0),
            func.coalesce(
                func.sum(case((BudgetSpend.account_id == account_id, BudgetSpend.epsilon), else_=0)), 0
            ),
            cap,
        ).where(BudgetSpend.project_id == project.id)
    ).one()
    return Balance(
        granted=project.granted_epsilon or Decimal(0),
        spent=Decimal(total).quantize(QUANTUM),
        researcher_spent=Decimal(own).quantize(QUANTUM),
        researcher_cap=None if researcher_cap is None else Decimal(researcher_cap),
    )


def require_room(current: Balance, epsilon: Decimal) -> None:
    """Refuse with 409 ``budget_exhausted`` (or ``researcher_cap_reached``) unless ε fits."""
    if current.spent + epsilon > current.granted:
        raise BudgetExhausted(
            f"budget exhausted: this query needs ε = {epsilon_text(epsilon)} but the project has "
            f"ε = {epsilon_text(current.remaining)} left of {epsilon_text(current.granted)}",
            code="budget_exhausted",
            requested=epsilon,
            remaining=current.remaining,
        )
    cap = current.researcher_cap
    if cap is not None and current.researcher_spent + epsilon > cap:
        left = max(cap - current.researcher_spent, Decimal(0))
        raise BudgetExhausted(
            f"your share of the budget is exhausted: this query needs ε = {epsilon_text(epsilon)} but "
            f"your cap in this project leaves ε = {epsilon_text(left)}",
            code="researcher_cap_reached",
            requested=epsilon,
            remaining=left,
        )


def record_spend(
    session: Session, *, project_id: str, account_id: str, release_id: str, epsilon: Decimal, at: datetime
) -> BudgetSpend:
    """Append the spend of one release (in the release's transaction, under the project's lock)."""
    entry = BudgetSpend(
        project_id=project_id, account_id=account_id, release_id=release_id, epsilon=epsilon, spent_at=at
    )
    session.add(entry)
    return entry


def spends(session: Session, project_ids: Sequence[str]) -> list[BudgetSpend]:
    """The spends of several projects, oldest first."""
    if not project_ids:
        return []
    return list(
        session.scalars(
            select(BudgetSpend)
            .where(BudgetSpend.project_id.in_(project_ids))
            .order_by(BudgetSpend.spent_at, BudgetSpend.id)
        )
    )
