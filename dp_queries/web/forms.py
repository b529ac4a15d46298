"""The query builder's form: what the researcher typed, kept for redisplay, and the query it asks.

The form sends plain fields (it works without JavaScript); this module turns them into the JSON a
query specification takes, names the field of any mistake it can see on its own, and lists which
variables of a dataset the project may use (the catalog's schema, narrowed to the grant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from dp_queries.spec import keys_of
from enclave.datasets.schemas import DatasetSchema, Variable, VariableType

STATISTICS = {
    "count": "Count of students",
    "sum": "Sum of a numeric variable",
    "mean": "Mean of a numeric variable",
    "quantile": "Quantile of a numeric variable (0.5 is the median)",
    "histogram": "Histogram of a numeric variable over bins",
    "crosstab": "Cross-table: counts for every combination of the grouping variables",
}
NEEDS_VARIABLE = frozenset({"sum", "mean", "quantile", "histogram"})
NUMERIC = frozenset({VariableType.numeric, VariableType.integer})
FIELD_LABELS = {
    "project_id": "Project",
    "dataset": "Dataset",
    "version": "Dataset version",
    "statistic": "Statistic",
    "variable": "Numeric variable",
    "group_by": "Group by",
    "filters": "Filters",
    "bounds": "Bounds",
    "quantile": "Quantile",
    "bins": "Bin edges",
    "epsilon": "ε",
    "accuracy": "Target accuracy",
}
FIELD_IDS = {
    "project_id": "project",
    "dataset": "dataset",
    "statistic": "statistic-count",
    "variable": "variable",
    "group_by": "group-by",
    "filters": "filters",
    "bounds": "lower",
    "quantile": "quantile",
    "bins": "bins",
    "epsilon": "epsilon",
    "accuracy": "accuracy",
}
"""The form control that each field of the query specification comes from (error links)."""
MAX_TEXT = 400


class FormProblem(Exception):
    """A mistake in the form the page can point at."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Choices:
    """What the builder offers for one dataset of one project."""

    numeric: list[Variable]
    groupable: list[Variable]

    @property
    def names(self) -> list[str]:
        """Every variable the project may use in this dataset."""
        return list(dict.fromkeys(v.name for v in (*self.numeric, *self.groupable)))


def allowed_names(dataset: str, allowed_variables: Sequence[str] | None) -> list[str]:
    """The project's variables of ``dataset`` (grants name them ``dataset.variable``)."""
    prefix = f"{dataset}."
    return [v[len(prefix) :] for v in allowed_variables or () if v.startswith(prefix)]


def choices(schema: DatasetSchema, allowed: Sequence[str]) -> Choices:
    """The dataset's variables the project may use, split by what they can do in a query."""
    permitted = [v for v in schema.variables if v.name in set(allowed)]
    return Choices(
        numeric=[v for v in permitted if v.type in NUMERIC],
        groupable=[v for v in permitted if keys_of(v) is not None],
    )


def category_values(variable: Variable) -> list[str]:
    """The public values of a variable that may be grouped or filtered on, as form values."""
    if variable.type is VariableType.boolean:
        return ["true", "false"]
    return [str(key) for key in keys_of(variable) or []]


def field_of(location: str) -> str:
    """The form field of a spec location such as ``spec.filters[0].values[1]``."""
    name = location.removeprefix("body.").removeprefix("spec.")
    return name.split("[", 1)[0].split(".", 1)[0]


@dataclass
class QueryForm:
    """The builder's fields as typed (strings), so a refused form comes back as it was."""

    project: str = ""
    dataset: str = ""
    statistic: str = "count"
    variable: str = ""
    group_by: list[str] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)
    lower: str = ""
    upper: str = ""
    quantile: str = "0.5"
    bins: str = ""
    budget_by: str = "epsilon"
    epsilon: str = "0.1"
    accuracy: str = ""

    @classmethod
    def from_form(cls, data: FormData) -> QueryForm:
        """Read the posted fields (unknown fields are ignored, long ones cut)."""

        def text(name: str, default: str = "") -> str:
            value = data.get(name)
            return value.strip()[:MAX_TEXT] if isinstance(value, str) else default

        filters: dict[str, list[str]] = {}
        for raw in data.getlist("filter"):
            if isinstance(raw, str) and "=" in raw:
                name, value = raw.split("=", 1)
                filters.setdefault(name[:64], []).append(value[:100])
        return cls(
            project=text("project"),
            dataset=text("dataset"),
            statistic=text("statistic", "count"),
            variable=text("variable"),
            group_by=[g[:64] for g in data.getlist("group_by") if isinstance(g, str) and g],
            filters=filters,
            lower=text("lower"),
            upper=text("upper"),
            quantile=text("quantile"),
            bins=text("bins"),
            budget_by=text("budget_by", "epsilon"),
            epsilon=text("epsilon"),
            accuracy=text("accuracy"),
        )

    def filtered(self, variable: str, value: str) -> bool:
        """Whether the form keeps only some values of ``variable``, ``value`` among them."""
        return value in self.filters.get(variable, [])

    def spec(self, schema: DatasetSchema) -> dict[str, Any]:
        """The query specification's JSON; FormProblem names a field that cannot be read."""
        if self.statistic not in STATISTICS:
            raise FormProblem("statistic", "choose a statistic")
        spec: dict[str, Any] = {"dataset": self.dataset, "statistic": self.statistic}
        if self.group_by:
            spec["group_by"] = list(dict.fromkeys(self.group_by))
        filters = self._filters(schema)
        if filters:
            spec["filters"] = filters
        spec.update(self._measured())
        spec.update(self._budget())
        return spec

    def _filters(self, schema: DatasetSchema) -> list[dict[str, Any]]:
        filters = []
        for name, values in self.filters.items():
            variable = schema.variable(name)
            typed: list[Any] = list(values)
            if variable is not None and variable.type is VariableType.boolean:
                typed = [v == "true" for v in values]
            elif variable is not None and variable.type is VariableType.integer:
                typed = [int(v) if v.lstrip("-").isdigit() else v for v in values]
            filters.append({"variable": name, "op": "in", "values": typed})
        return filters

    def _measured(self) -> dict[str, Any]:
        """The numeric variable and what the statistic needs of it."""
        if self.statistic not in NEEDS_VARIABLE:
            return {}
        if not self.variable:
            raise FormProblem("variable", "choose the numeric variable to summarise")
        spec: dict[str, Any] = {"variable": self.variable}
        if self.lower or self.upper:
            if not (self.lower and self.upper):
                raise FormProblem("bounds", "give both the lower and the upper bound, or neither")
            spec["bounds"] = [_number("bounds", self.lower), _number("bounds", self.upper)]
        if self.statistic == "quantile":
            spec["quantile"] = _number("quantile", self.quantile or "0.5")
        if self.statistic == "histogram":
            if not self.bins:
                raise FormProblem("bins", "give the bin edges, separated by commas (e.g. 1, 2, 3, 4, 5)")
            parts = self.bins.replace(";", ",").split(",")
            spec["bins"] = [_number("bins", part) for part in parts if part.strip()]
        return spec

    def _budget(self) -> dict[str, Any]:
        """ε, or the accuracy to derive it from."""
        if self.budget_by == "accuracy":
            if not self.accuracy:
                raise FormProblem("accuracy", "give the accuracy you want (± at 95 %)")
            return {"accuracy": _number("accuracy", self.accuracy)}
        if not self.epsilon:
            raise FormProblem("epsilon", "give the ε to spend (e.g. 0.1)")
        _number("epsilon", self.epsilon)
        return {"epsilon": self.epsilon}


def _number(name: str, text: str) -> float:
    try:
        value = float(text.strip().replace(" ", ""))
    except ValueError:
        raise FormProblem(name, f"{text.strip()[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise FormProblem(name, "must be a finite number")
    return value
