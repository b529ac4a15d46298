"""The declared schema of a dataset, and the catalog's answers.

A schema names the subject-id column (the school's pupil reference, replaced by a keyed pseudonym
at ingestion) and the school column (which, with the reference, finds the student on the roster), the direct
identifiers to drop (names, emails, addresses, free text: never stored), and the typed variables
that are kept:

* ``categorical``: the public list of categories; any other value is a bad row;
* ``numeric``: bounds ``[min, max]``; values outside are bad rows (differential privacy needs
  them: they bound each person's contribution);
* ``integer``: as numeric, whole numbers;
* ``boolean``;
* ``date``: ISO dates within ``[min_date, max_date]``.

Each variable may be flagged ``special_category`` (GDPR Art. 9: health, special needs, ethnicity).
Researchers see this schema and the dataset's metadata; never row counts or values.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

ColumnName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
DatasetId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Category = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MAX_VARIABLES = 500
MAX_CATEGORIES = 1000


class VariableType(StrEnum):
    """The type of a kept variable."""

    categorical = "categorical"
    numeric = "numeric"
    integer = "integer"
    boolean = "boolean"
    date = "date"


class Variable(BaseModel):
    """A kept column with its type and public domain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ColumnName
    type: VariableType
    description: str = Field(default="", max_length=500)
    categories: list[Category] | None = Field(default=None, max_length=MAX_CATEGORIES)
    min: float | None = None
    max: float | None = None
    min_date: date | None = None
    max_date: date | None = None
    special_category: bool = False

    @model_validator(mode="after")
    def _domain_fits_type(self) -> Self:
        kind = self.type
        if kind is VariableType.categorical:
            if not self.categories:
                raise ValueError(f"{self.name}: a categorical variable lists its categories")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"{self.name}: a category is listed twice")
        elif self.categories is not None:
            raise ValueError(f"{self.name}: only categorical variables have categories")
        if kind in (VariableType.numeric, VariableType.integer):
            if self.min is None or self.max is None or not self.min < self.max:
                raise ValueError(f"{self.name}: a numeric variable has bounds with min < max")
        elif self.min is not None or self.max is not None:
            raise ValueError(f"{self.name}: only numeric variables have min and max")
        if kind is VariableType.date:
            if self.min_date is None or self.max_date is None or not self.min_date < self.max_date:
                raise ValueError(f"{self.name}: a date variable has min_date < max_date")
        elif self.min_date is not None or self.max_date is not None:
            raise ValueError(f"{self.name}: only date variables have min_date and max_date")
        return self


class DatasetSchema(BaseModel):
    """What an upload must contain and what is kept of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject_id_column: ColumnName
    """The school's pupil reference, as on the roster (never stored: replaced by a pseudonym)."""
    school_column: ColumnName
    """The school code, as on the roster: with the reference it finds the student; then dropped."""
    drop_columns: list[ColumnName] = Field(default_factory=list, max_length=MAX_VARIABLES)
    """Direct identifiers present in uploads and dropped at once (names, emails, free text)."""
    variables: list[Variable] = Field(min_length=1, max_length=MAX_VARIABLES)

    @model_validator(mode="after")
    def _names_distinct(self) -> Self:
        names = [v.name for v in self.variables]
        everything = [self.subject_id_column, self.school_column, *self.drop_columns, *names]
        repeated = sorted({n for n in everything if everything.count(n) > 1})
        if repeated:
            raise ValueError(f"a column is declared twice: {', '.join(repeated)}")
        return self

    def variable(self, name: str) -> Variable | None:
        """The variable with this name, if kept."""
        return next((v for v in self.variables if v.name == name), None)


class DatasetCreate(BaseModel):
    """A new dataset in the catalog."""

    model_config = ConfigDict(extra="forbid")

    id: DatasetId
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    purpose: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")]
    domain: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")] = Field(
        description="Pseudonymisation domain (one per project domain); datasets of two domains never join."
    )
    retention_until: date
    schema_: DatasetSchema = Field(alias="schema")


class VersionRead(BaseModel):
    """A version as stewards and the DPO see it (counts included)."""

    version: int
    state: str
    created_at: datetime
    published_at: datetime | None
    rows: int | None
    excluded_without_consent: int | None


class DatasetRead(BaseModel):
    """A catalog entry. ``versions`` carry counts only for stewards and the DPO."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    title: str
    description: str
    purpose: str
    domain: str
    retention_until: date
    schema_: DatasetSchema = Field(serialization_alias="schema")
    special_category_variables: list[str]
    latest_version: int | None
    versions: list[VersionRead] | None = Field(
        default=None, description="Versions with their counts (stewards and the DPO only)."
    )
