"""Bodies of the DP query API: what researchers send and what they get back (never rows or counts)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from access.projects.models import EPSILON_PLACES
from dp_queries.spec import QuerySpec

ProjectIdField = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
EpsilonText = Annotated[str, Field(description="ε as decimal text, exactly as the budget counts it.")]


class QueryRequest(BaseModel):
    """A query for one project: the project it spends from and the declarative spec."""

    model_config = ConfigDict(extra="forbid")

    project_id: ProjectIdField = Field(description="The project whose budget the release spends.")
    spec: QuerySpec


class StatisticAccuracy(BaseModel):
    """Expected accuracy of one released statistic."""

    name: str
    accuracy_95: float | None = Field(
        description="± half-width of the 95 % interval of the noise, in the statistic's unit; null for "
        "a quantile, whose accuracy in the variable's unit depends on the data (see rank_accuracy_95)."
    )
    rank_accuracy_95: float | None = Field(
        default=None,
        description="A quantile's accuracy in ranks: with 95 % probability the number of students "
        "below the released value is within this many students of the target (the quantile × the "
        "group's students), beyond what the candidate grid itself misses by. Null for other statistics.",
    )
    grid_half_step: float | None = Field(
        default=None,
        description="A quantile's resolution: the released value is one of the candidates, so it is "
        "also off by up to half their spacing, in the variable's unit. Null for other statistics.",
    )


class PreviewAnswer(BaseModel):
    """What a query would cost and how accurate it would be; nothing spent, no data read."""

    project_id: str
    dataset: str
    version: int
    spec_hash: str
    epsilon: EpsilonText = Field(description="ε the release would charge (derived from accuracy if asked).")
    statistics: list[StatisticAccuracy]
    remaining_epsilon: EpsilonText
    available_epsilon: EpsilonText = Field(description="What you may spend: the remainder within your cap.")
    runs_as_job: bool = Field(
        description="True when the dataset is large and the release runs on the worker."
    )


class ReleaseRead(BaseModel):
    """A released result with its cost."""

    id: str
    project_id: str
    account_id: str
    dataset: str
    version: int
    spec: dict[str, Any]
    spec_hash: str
    epsilon: EpsilonText = Field(description="ε charged to the project when it was first released.")
    result: dict[str, Any] = Field(description="Estimates with their accuracy; noisy statistics flagged.")
    created_at: datetime


class ReleaseAnswer(ReleaseRead):
    """The answer to a query: the release, whether it was a replay, and what is left."""

    reused: bool = Field(description="True when an identical earlier release was returned at no cost.")
    charged_epsilon: EpsilonText = Field(description="ε spent by this request (0 for a replay).")
    remaining_epsilon: EpsilonText


class ReleasePage(BaseModel):
    """A project's releases, newest first."""

    items: list[ReleaseRead]
    total: int
    limit: int
    offset: int


class JobRead(BaseModel):
    """A query running on the worker."""

    id: str
    project_id: str
    dataset: str
    spec_hash: str
    status: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    release: ReleaseRead | None = None
    error: dict[str, Any] | None = Field(
        default=None, description="The refusal or failure (status, reason, detail) of a failed job."
    )


class SpendPoint(BaseModel):
    """One spend, with the project's running total after it."""

    at: datetime
    account_id: str
    release_id: str
    epsilon: EpsilonText
    cumulative: EpsilonText


class ResearcherBudget(BaseModel):
    """What one member spent, and their cap if any."""

    account_id: str
    spent: EpsilonText
    cap: EpsilonText | None


class BudgetRead(BaseModel):
    """A project's budget: granted, spent, remaining, per researcher and over time."""

    project_id: str
    title: str
    status: str
    granted: EpsilonText
    spent: EpsilonText
    remaining: EpsilonText
    researchers: list[ResearcherBudget]
    spends: list[SpendPoint]


class CapSet(BaseModel):
    """A researcher's cap within a project; null removes it."""

    model_config = ConfigDict(extra="forbid")

    cap: Annotated[Decimal, Field(ge=0, le=1000, decimal_places=EPSILON_PLACES)] | None
