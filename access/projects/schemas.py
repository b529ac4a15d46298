"""Request and response bodies of the projects API (Pydantic v2).

Dates are ISO dates; ε is accepted as a decimal string or a number and always answered as a
decimal string, so no budget ever passes through binary floating point on the way out.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)

from access.projects.models import (
    EPSILON_PLACES,
    PURPOSES,
    LawfulBasis,
    MemberRole,
    ProjectStatus,
    SpecialCategoryCondition,
)

MAX_REQUESTED_EPSILON = Decimal("10")
"""The largest budget anyone may ask for; beyond it answers carry little privacy protection."""
MAX_LIST_ITEMS = 200

Purpose = Literal[
    "questionnaires", "school_records", "interviews", "special_category", "recontact", "consortium_sharing"
]
if set(get_args(Purpose)) != set(PURPOSES):  # one list, two spellings: keep them equal
    raise RuntimeError("Purpose and PURPOSES disagree")

DatasetId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
"""A catalog dataset identifier: lower-case letters, digits, '_' and '-'."""
VariableId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}\.[a-z][a-z0-9_]{0,63}$")]
"""A variable qualified by its dataset: ``<dataset>.<variable>``."""
Reference = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=100, pattern=r"^[\w][\w ./:#()-]*$"),
]
"""A reference number such as an ethics approval or a training certificate."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be one line without control characters")
    return value


def _text(value: str) -> str:
    # PostgreSQL refuses NUL in text, and other control characters only hide content from readers.
    if _CONTROL_EXCEPT_LINES.search(value):
        raise ValueError("must not contain control characters other than line breaks and tabs")
    return value


Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200), AfterValidator(_single_line)
]
Justification = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=20, max_length=20_000), AfterValidator(_text)
]
Note = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=4_000), AfterValidator(_text)
]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Epsilon = Annotated[
    Decimal,
    Field(
        gt=0,
        le=MAX_REQUESTED_EPSILON,
        max_digits=10,
        decimal_places=EPSILON_PLACES,
        description="Privacy budget ε as a decimal string or number: above 0, at most 10, "
        "up to four decimal places.",
    ),
]
EpsilonText = Annotated[
    Decimal, PlainSerializer(lambda value: format(value.normalize(), "f"), return_type=str, when_used="json")
]
"""ε in answers: a plain decimal string without trailing zeros, e.g. "1.5"."""
AccountId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,36}$")]


def _unique(values: list[str] | None) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("must not list the same identifier twice")
    return values


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AgreementAcceptance(_Body):
    """The version and SHA-256 of the agreement text the researcher was shown and accepts."""

    version: Annotated[str, StringConstraints(max_length=40)]
    sha256: Sha256Hex
    accepted: Literal[True] = Field(description="Must be true: the agreement is accepted.")


class TrainingAttestation(_Body):
    """The proposing researcher's data-protection training certificate."""

    reference: Reference
    expires_on: date


class ProjectCreate(_Body):
    """A new proposal, saved as a draft."""

    title: Title
    purpose: Purpose
    lawful_basis: LawfulBasis
    special_category_condition: SpecialCategoryCondition | None = Field(
        None, description="Required for the special_category purpose, refused for any other."
    )
    datasets: Annotated[list[DatasetId], Field(min_length=1, max_length=MAX_LIST_ITEMS)]
    variables: Annotated[list[VariableId], Field(min_length=1, max_length=MAX_LIST_ITEMS)]
    justification: Justification
    requested_epsilon: Epsilon
    start_date: date
    end_date: date
    ethics_reference: Reference
    agreement: AgreementAcceptance
    training: TrainingAttestation

    _unique_lists = field_validator("datasets", "variables")(_unique)


class ProjectUpdate(_Body):
    """Changes to a draft; fields left out keep their value."""

    title: Title | None = None
    purpose: Purpose | None = None
    lawful_basis: LawfulBasis | None = None
    special_category_condition: SpecialCategoryCondition | None = None
    datasets: Annotated[list[DatasetId], Field(min_length=1, max_length=MAX_LIST_ITEMS)] | None = None
    variables: Annotated[list[VariableId], Field(min_length=1, max_length=MAX_LIST_ITEMS)] | None = None
    justification: Justification | None = None
    requested_epsilon: Epsilon | None = None
    start_date: date | None = None
    end_date: date | None = None
    ethics_reference: Reference | None = None
    agreement: AgreementAcceptance | None = None
    training: TrainingAttestation | None = None

    _unique_lists = field_validator("datasets", "variables")(_unique)

    @model_validator(mode="after")
    def _not_empty(self) -> ProjectUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class ApprovalCreate(_Body):
    """The terms an approver grants: budget, scope and last day of access."""

    granted_epsilon: Epsilon
    datasets: Annotated[list[DatasetId], Field(min_length=1, max_length=MAX_LIST_ITEMS)]
    variables: Annotated[list[VariableId], Field(min_length=1, max_length=MAX_LIST_ITEMS)]
    end_date: date

    _unique_lists = field_validator("datasets", "variables")(_unique)


class DecisionNote(_Body):
    """The reviewer's reasons, shown to the researchers and kept out of the audit ledger."""

    note: Note


class MemberAdd(_Body):
    """A researcher account to add to the project."""

    account_id: AccountId


class MemberRead(BaseModel):
    """A project member."""

    model_config = ConfigDict(from_attributes=True)

    account_id: str
    role: MemberRole
    added_at: datetime


class ApprovalRead(BaseModel):
    """One recorded approval."""

    model_config = ConfigDict(from_attributes=True)

    approver_id: str
    approver_role: str
    review_round: int
    granted_epsilon: EpsilonText
    allowed_datasets: list[str]
    allowed_variables: list[str]
    end_date: date
    approved_at: datetime


class ProjectRead(BaseModel):
    """A project as its members and reviewers see it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    owner_id: str
    status: ProjectStatus
    title: str
    purpose: str
    lawful_basis: LawfulBasis
    special_category_condition: SpecialCategoryCondition | None
    datasets: list[str]
    variables: list[str]
    justification: str
    requested_epsilon: EpsilonText
    start_date: date
    end_date: date
    ethics_reference: str
    agreement_version: str
    agreement_sha256: str
    agreement_accepted_at: datetime
    training_reference: str
    training_expires_on: date
    review_round: int
    approvals_required: int
    granted_epsilon: EpsilonText | None
    allowed_datasets: list[str] | None
    allowed_variables: list[str] | None
    decision_note: str | None
    members: list[MemberRead]
    approvals: list[ApprovalRead]
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    approved_at: datetime | None


class ProjectPage(BaseModel):
    """One page of the projects the caller may see."""

    items: list[ProjectRead]
    total: int
    limit: int
    offset: int


class AgreementRead(BaseModel):
    """The data-use agreement to accept: its version, the SHA-256 to send back, and its text."""

    version: str
    sha256: str
    text: str
