"""The researcher's query: a declarative JSON specification, its checks and its canonical hash.

A query names a dataset (and optionally a version), filters on public categorical variables,
groups over public categorical variables (whose keys come from the catalog, so every group is
listed, empty or not, and no partition selection is needed), and asks for one statistic: a count,
a sum, a mean, a quantile, a histogram of a numeric variable over declared bins, or a
cross-tabulation of two or more categorical variables. The privacy loss is given either as ε or as
a target accuracy (± at 95 %) from which ε is derived.

``check`` refuses anything else with :class:`InvalidQuery` (422) naming the field. The checks use
only the catalog's schema and the project's approved variables: no data.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field

from enclave.datasets.schemas import DatasetSchema, Variable, VariableType
from infra.errors import InvalidField

MAX_EPSILON = Decimal("5")
"""Largest ε one query may spend (a query is one release; budgets are granted per project)."""
MAX_GROUPS = 10_000
"""Largest number of cells of one release (groups × histogram bins)."""
MAX_BINS = 200
"""Largest number of histogram bins."""
MAX_INTEGER_KEYS = 100
"""An integer variable with at most this many values (from its catalog bounds) may be grouped on."""
MAX_FILTER_VALUES = 1000

Statistic = Literal["count", "sum", "mean", "quantile", "histogram", "crosstab"]
FilterValue = bool | int | str


class InvalidQuery(InvalidField):
    """A query the engine refuses: the answer names the field and a machine-readable reason."""


class Filter(BaseModel):
    """Keep the rows whose public categorical ``variable`` is one of ``values``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variable: str = Field(min_length=1, max_length=64)
    op: Literal["in", "eq"] = "in"
    values: list[FilterValue] = Field(min_length=1, max_length=MAX_FILTER_VALUES)


class QuerySpec(BaseModel):
    """A researcher's query, as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1, max_length=64)
    version: int | None = Field(default=None, ge=1)
    filters: list[Filter] = Field(default_factory=list, max_length=20)
    group_by: list[str] = Field(default_factory=list, max_length=5)
    statistic: Statistic
    variable: str | None = Field(default=None, max_length=64)
    bounds: tuple[float, float] | None = None
    quantile: float | None = None
    bins: list[float] | None = Field(default=None, max_length=MAX_BINS + 1)
    epsilon: Decimal | None = None
    accuracy: float | None = None


NUMERIC = (VariableType.numeric, VariableType.integer)
NEEDS_VARIABLE = ("sum", "mean", "quantile", "histogram")


def _refuse(field: str, detail: str, code: str) -> InvalidQuery:
    return InvalidQuery(field, detail, code=code)


def _known(schema: DatasetSchema, allowed: Sequence[str], name: str, field: str) -> Variable:
    variable = schema.variable(name)
    if variable is None:
        raise _refuse(field, f"'{name}' is not a variable of this dataset", "unknown_variable")
    if name not in allowed:
        raise _refuse(
            field, f"'{name}' is not among the project's approved variables", "variable_not_approved"
        )
    return variable


def keys_of(variable: Variable) -> list[Any] | None:
    """The public keys of a variable that may be grouped or filtered on (None if it may not)."""
    if variable.type is VariableType.categorical:
        return list(variable.categories or [])
    if variable.type is VariableType.boolean:
        return [False, True]
    if variable.type is VariableType.integer and variable.min is not None and variable.max is not None:
        low, high = math.ceil(variable.min), math.floor(variable.max)
        if high - low + 1 <= MAX_INTEGER_KEYS:
            return list(range(low, high + 1))
    return None


def _public(variable: Variable, field: str) -> list[Any]:
    keys = keys_of(variable)
    if keys is None:
        raise _refuse(
            field,
            f"'{variable.name}' is not a public categorical variable (its values are private)",
            "not_public",
        )
    return keys


def _value_fits(value: FilterValue, variable: Variable, keys: list[Any]) -> bool:
    if variable.type is VariableType.boolean:
        return isinstance(value, bool)
    if variable.type is VariableType.integer:
        return isinstance(value, int) and not isinstance(value, bool) and value in keys
    return isinstance(value, str) and value in keys


def effective_bounds(spec: QuerySpec, variable: Variable) -> tuple[float, float]:
    """The clipping bounds of the statistic: the researcher's (checked) or the catalog's."""
    assert variable.min is not None
    assert variable.max is not None
    return spec.bounds if spec.bounds is not None else (variable.min, variable.max)


def check(spec: QuerySpec, schema: DatasetSchema, allowed_variables: Sequence[str]) -> None:
    """Refuse, naming the field, any query the engine will not run for this project."""
    allowed = list(allowed_variables)
    filtered: dict[str, list[Any]] = {}
    for index, item in enumerate(spec.filters):
        field = f"filters[{index}]"
        variable = _known(schema, allowed, item.variable, f"{field}.variable")
        keys = _public(variable, f"{field}.variable")
        if item.op == "eq" and len(item.values) != 1:
            raise _refuse(f"{field}.values", "'eq' takes exactly one value", "eq_one_value")
        for position, value in enumerate(item.values):
            if not _value_fits(value, variable, keys):
                raise _refuse(
                    f"{field}.values[{position}]",
                    f"{value!r} is not a value of '{variable.name}'",
                    "unknown_value",
                )
        if item.variable in filtered:
            raise _refuse(f"{field}.variable", f"'{item.variable}' is filtered twice", "filtered_twice")
        filtered[item.variable] = list(item.values)
    cells = 1
    for index, name in enumerate(spec.group_by):
        field = f"group_by[{index}]"
        variable = _known(schema, allowed, name, field)
        keys = _public(variable, field)
        if spec.group_by.index(name) != index:
            raise _refuse(field, f"'{name}' is grouped on twice", "grouped_twice")
        cells *= len(filtered.get(name, keys))
    _check_statistic(spec, schema, allowed, cells)
    _check_privacy(spec)


def _check_statistic(spec: QuerySpec, schema: DatasetSchema, allowed: list[str], cells: int) -> None:
    kind = spec.statistic
    if kind in NEEDS_VARIABLE:
        if spec.variable is None:
            raise _refuse("variable", f"a {kind} needs a numeric variable", "variable_missing")
        variable = _known(schema, allowed, spec.variable, "variable")
        if variable.type not in NUMERIC:
            raise _refuse(
                "variable",
                f"a {kind} needs a numeric variable; '{variable.name}' is {variable.type}",
                "not_numeric",
            )
        _check_bounds(spec, variable)
    else:
        for name in ("variable", "bounds"):
            if getattr(spec, name) is not None:
                raise _refuse(name, f"a {kind} takes no {name}", "not_applicable")
    cells *= _check_extras(spec, schema)
    if kind == "crosstab" and len(spec.group_by) < 2:
        raise _refuse(
            "group_by", "a cross-tabulation groups on two or more categorical variables", "crosstab_needs_two"
        )
    if cells > MAX_GROUPS:
        raise _refuse("group_by", f"{cells} cells; at most {MAX_GROUPS} per query", "too_many_groups")


def _check_extras(spec: QuerySpec, schema: DatasetSchema) -> int:
    """Quantile and bins, where they belong; the number of bins (1 without)."""
    kind = spec.statistic
    bins = 1
    if kind == "quantile":
        if spec.quantile is None or not 0 < spec.quantile < 1:
            raise _refuse(
                "quantile",
                "a quantile between 0 and 1 (exclusive), e.g. 0.5 for the median",
                "quantile_range",
            )
    elif spec.quantile is not None:
        raise _refuse("quantile", f"a {kind} takes no quantile", "not_applicable")
    if kind == "histogram":
        bins = _check_bins(spec, schema)
    elif spec.bins is not None:
        raise _refuse("bins", f"a {kind} takes no bins", "not_applicable")
    return bins


def _check_bounds(spec: QuerySpec, variable: Variable) -> None:
    if spec.bounds is None:
        return
    low, high = spec.bounds
    assert variable.min is not None
    assert variable.max is not None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise _refuse("bounds", "bounds are two finite numbers, lower < upper", "bad_bounds")
    if low < variable.min or high > variable.max:
        raise _refuse(
            "bounds",
            f"may narrow but not widen the catalog's bounds [{variable.min:g}, {variable.max:g}]",
            "bounds_widened",
        )
    if variable.type is VariableType.integer and (low != int(low) or high != int(high)):
        raise _refuse("bounds", f"'{variable.name}' is an integer: whole-number bounds", "bad_bounds")


def _check_bins(spec: QuerySpec, schema: DatasetSchema) -> int:
    edges = spec.bins
    if edges is None or len(edges) < 2:
        raise _refuse("bins", "a histogram declares at least two bin edges", "bins_missing")
    if len(edges) - 1 > MAX_BINS:
        raise _refuse("bins", f"at most {MAX_BINS} bins", "too_many_bins")
    if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in itertools.pairwise(edges)):
        raise _refuse("bins", "bin edges are finite and strictly increasing", "bad_bins")
    assert spec.variable is not None
    variable = schema.variable(spec.variable)
    assert variable is not None
    low, high = effective_bounds(spec, variable)
    if edges[0] < low or edges[-1] > high:
        raise _refuse("bins", f"bin edges lie within the bounds [{low:g}, {high:g}]", "bins_outside_bounds")
    return len(edges) - 1


def _check_privacy(spec: QuerySpec) -> None:
    if (spec.epsilon is None) == (spec.accuracy is None):
        raise _refuse("epsilon", "give exactly one of epsilon and accuracy", "epsilon_or_accuracy")
    if spec.epsilon is not None:
        if not spec.epsilon.is_finite() or spec.epsilon <= 0:
            raise _refuse("epsilon", "ε is a positive number", "epsilon_not_positive")
        if spec.epsilon > MAX_EPSILON:
            raise _refuse("epsilon", f"at most {MAX_EPSILON} per query", "epsilon_too_large")
    if spec.accuracy is not None and not (math.isfinite(spec.accuracy) and spec.accuracy > 0):
        raise _refuse(
            "accuracy", "the target accuracy is a positive number (± at 95 %)", "accuracy_not_positive"
        )
    if spec.accuracy is not None and spec.statistic == "mean":
        raise _refuse(
            "accuracy",
            "a mean's accuracy depends on the data: give epsilon (see the preview)",
            "accuracy_not_supported",
        )
    if spec.accuracy is not None and spec.statistic == "quantile":
        raise _refuse(
            "accuracy",
            "a quantile's accuracy is a band of ranks (± students), not a ± in the variable's unit: "
            "give epsilon (the preview shows the band)",
            "accuracy_not_supported",
        )


def _number(value: float | Decimal) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def canonical(spec: QuerySpec) -> dict[str, Any]:
    """The spec with its meaning-preserving variations removed (order of filters and of 'in' values,
    'eq' as a one-value 'in', 1 and 1.0, 0.10 and 0.1, absent and default fields)."""
    filters = sorted(
        (
            {
                "variable": f.variable,
                "op": "in",
                "values": sorted(set(f.values), key=lambda v: (type(v).__name__, str(v))),
            }
            for f in spec.filters
        ),
        key=lambda f: str(f["variable"]),
    )
    body: dict[str, Any] = {
        "dataset": spec.dataset,
        "version": spec.version,
        "filters": filters,
        "group_by": list(spec.group_by),
        "statistic": spec.statistic,
        "variable": spec.variable,
        "bounds": [_number(b) for b in spec.bounds] if spec.bounds is not None else None,
        "quantile": _number(spec.quantile) if spec.quantile is not None else None,
        "bins": [_number(b) for b in spec.bins] if spec.bins is not None else None,
        "epsilon": _number(spec.epsilon) if spec.epsilon is not None else None,
        "accuracy": _number(spec.accuracy) if spec.accuracy is not None else None,
    }
    return {k: v for k, v in body.items() if v is not None}


def canonical_json(spec: QuerySpec) -> bytes:
    """RFC 8785 canonical JSON of :func:`canonical` (sorted keys, normalised numbers)."""
    encoded: bytes = rfc8785.dumps(canonical(spec))
    return encoded


def spec_hash(spec: QuerySpec) -> str:
    """SHA-256 hex of the canonical JSON: identical queries hash identically."""
    return hashlib.sha256(canonical_json(spec)).hexdigest()
