"""Execution of a checked query with OpenDP's Polars integration, calibrated in milliseconds.

The input domain is built from the catalog's schema (never from data): the categories of
categorical variables, the bounds of numeric ones, and a public upper bound on the number of rows
(:data:`MAX_ROWS`). Group keys come from the catalog and are joined to the aggregate as a public
key-set, so every catalog group is released (empty ones too) and no partition selection is needed.

The privacy unit is one student: neighbouring datasets differ by the rows of one student, at most
``rows_per_subject`` rows (symmetric distance ``d_in = rows_per_subject``).

A quantile is chosen among candidates by OpenDP's quantile score and permute-and-flip selection
(report-noisy-min with exponential noise); its accuracy is a band of ranks, not a ± in the variable's
unit (see :func:`quantile_rank_accuracy`).

Calibration does not search: the measurement is built once with a global noise scale derived from ε
(OpenDP's ``global_scale`` makes every noisy output cost ``1 / global_scale`` per unit of input
distance), its privacy map is evaluated, and the scale is corrected in proportion if the map says
more or noticeably less than ε (floating-point sums carry a small rounding allowance). The released
measurement's loss is then checked to be at most the ε charged. Measurements are cached by (query,
schema, ε, rows per subject): a repeated query only runs the data through them.
"""

from __future__ import annotations

import itertools
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import polars as pl

from dp_queries import dp, resident
from dp_queries.spec import QuerySpec, effective_bounds, keys_of
from enclave.datasets.schemas import DatasetSchema, Variable, VariableType
from infra.errors import ReasonedConflict

if TYPE_CHECKING:
    from dp_queries.accuracy import Preview

dp_any: Any = dp
"""The OpenDP prelude, untyped where its stubs miss the Polars helpers (``dp.len``, ``dp.polars``)."""

MAX_ROWS = 10_000_000
"""Public upper bound on the rows of a dataset version (part of the input domain: float sums carry a
rounding allowance that grows with it)."""
NOISE_DOMINATES_RATIO = 0.5
"""A released value is flagged when its 95 % half-width exceeds this fraction of its magnitude."""
ALPHA = 0.05
"""Accuracy is the half-width of a (1 - ALPHA) interval: 95 %."""
QUANTILE_CANDIDATES = 101
"""Candidates of a quantile on a numeric variable: an even grid over the bounds."""
RELATIVE_TOLERANCE = 1e-9
"""Float tolerance when comparing the measurement's loss with the ε charged."""
U64_MAX = 2**64 - 1
SELECTION_TAILS = {"ExponentialMin": 2.0, "GumbelMin": 1.0}
"""Selection mechanisms with a data-free rank guarantee: a candidate whose score is ``g`` worse than
the best is released with probability at most ``exp(-g / scale) / tail`` (see
:func:`quantile_rank_accuracy`)."""

BIN = "bin"
"""Column name of the histogram bin."""


class DatasetTooLarge(ReasonedConflict):
    """More rows than the engine's public bound :data:`MAX_ROWS` (part of every measurement's domain)."""

    def __init__(self, rows: int) -> None:
        super().__init__(
            f"the dataset has more rows than the query engine's bound of {MAX_ROWS:,}",
            code="dataset_too_large",
        )
        self.rows = rows


class PrivacyCheckFailed(RuntimeError):
    """The built measurement would lose more than the ε charged (a bug: nothing is released)."""


@dataclass(frozen=True)
class Output:
    """One noisy column of the measurement, with its noise distribution and 95 % half-width."""

    column: str
    aggregate: str
    distribution: str
    scale: float
    accuracy_95: float | None


@dataclass
class Calibrated:
    """A measurement ready to run, with its privacy loss and the accuracy of its outputs."""

    spec: QuerySpec
    measurement: Any
    epsilon: float
    loss: float
    global_scale: float
    group_columns: list[str]
    keys: list[tuple[Any, ...]]
    columns: dict[str, pl.DataType]
    domain: Any
    outputs: dict[str, Output]
    candidates: list[float] | None = None
    bounds: tuple[float, float] | None = None
    rank_accuracy_95: float | None = None


@dataclass(frozen=True)
class Release:
    """What a researcher receives: released values with their accuracy, and the ε spent."""

    statistic: str
    epsilon_spent: float
    rows: list[dict[str, Any]]
    group_by: list[str]
    variable: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored and returned form."""
        return {
            "statistic": self.statistic,
            "variable": self.variable,
            "group_by": list(self.group_by),
            "epsilon_spent": self.epsilon_spent,
            "confidence": 1 - ALPHA,
            "rows": [dict(r) for r in self.rows],
            **({"details": self.details} if self.details else {}),
        }


def _dtype(variable: Variable) -> pl.DataType:
    if variable.type is VariableType.categorical:
        return pl.Enum(variable.categories or [])
    if variable.type is VariableType.boolean:
        return pl.Boolean()
    if variable.type is VariableType.integer:
        return pl.Int64()
    if variable.type is VariableType.numeric:
        return pl.Float64()
    raise ValueError(f"{variable.name}: {variable.type} variables are not queried")


def _element_domain(variable: Variable) -> Any:
    if variable.type is VariableType.categorical:
        return dp.enum_domain(pl.Series(variable.categories or [], dtype=pl.String))
    if variable.type is VariableType.boolean:
        return dp.atom_domain(T="bool")
    if variable.type is VariableType.integer:
        return dp.atom_domain(T="i64")
    return dp.atom_domain(T="f64", nan=False)


def _variable(schema: DatasetSchema, name: str) -> Variable:
    variable = schema.variable(name)
    if variable is None:
        raise ValueError(f"unknown variable {name}: check() the spec first")
    return variable


def _literal(variable: Variable, value: Any) -> pl.Expr:
    if variable.type is VariableType.boolean:
        return pl.col(variable.name) if value else ~pl.col(variable.name)
    return pl.col(variable.name) == pl.lit(value)


def _needed(spec: QuerySpec) -> list[str]:
    names = [f.variable for f in spec.filters] + list(spec.group_by)
    if spec.variable is not None:
        names.append(spec.variable)
    return list(dict.fromkeys(names))


def _numeric_bounds(variable: Variable, bounds: tuple[float, float]) -> tuple[Any, Any]:
    if variable.type is VariableType.integer:
        return (int(bounds[0]), int(bounds[1]))
    return (float(bounds[0]), float(bounds[1]))


def _candidates(variable: Variable, bounds: tuple[float, float]) -> list[float]:
    low, high = bounds
    if variable.type is VariableType.integer and high - low + 1 <= 1000:
        return [float(v) for v in range(int(low), int(high) + 1)]
    step = (high - low) / (QUANTILE_CANDIDATES - 1)
    return [low + i * step for i in range(QUANTILE_CANDIDATES - 1)] + [high]


def bin_labels(edges: list[float]) -> list[str]:
    """Labels of the histogram bins: [a, b) and the last closed [a, b]."""
    last = len(edges) - 2
    return [f"[{a:g}, {b:g}{']' if i == last else ')'}" for i, (a, b) in enumerate(itertools.pairwise(edges))]


@dataclass
class _Plan:
    columns: dict[str, pl.DataType]
    domain: Any
    lazyframe: pl.LazyFrame
    group_columns: list[str]
    keys: list[tuple[Any, ...]]
    candidates: list[float] | None
    bounds: tuple[float, float] | None


def _domain(schema: DatasetSchema, variables: dict[str, Variable]) -> tuple[dict[str, pl.DataType], Any]:
    chosen = list(variables.values())
    if not chosen:
        # A count over everything still reads one column to count rows of: the first queryable one.
        chosen = [next(v for v in schema.variables if v.type is not VariableType.date)]
    columns = {v.name: _dtype(v) for v in chosen}
    series = [dp.series_domain(v.name, _element_domain(v)) for v in chosen]
    margin = dp_any.polars.Margin(by=[], max_length=MAX_ROWS)
    return columns, dp.with_margin(dp.lazyframe_domain(series), margin)


def _filtered(spec: QuerySpec, variables: dict[str, Variable], frame: pl.LazyFrame) -> pl.LazyFrame:
    for item in spec.filters:
        variable = variables[item.variable]
        values = list(dict.fromkeys(item.values))
        condition = _literal(variable, values[0])
        for value in values[1:]:
            condition = condition | _literal(variable, value)
        frame = frame.filter(condition)
    return frame


def _count() -> pl.Expr:
    expression: pl.Expr = dp_any.len(signed=True).alias("count")
    return expression


def _aggregates(
    spec: QuerySpec, variables: dict[str, Variable]
) -> tuple[list[pl.Expr], tuple[float, float] | None, list[float] | None]:
    """The noisy aggregates, the clipping bounds and the quantile candidates."""
    if spec.statistic in ("count", "crosstab", "histogram"):
        return [_count()], None, None
    assert spec.variable is not None
    variable = variables[spec.variable]
    bounds = effective_bounds(spec, variable)
    typed = _numeric_bounds(variable, bounds)
    column: Any = pl.col(spec.variable)
    if spec.statistic == "sum":
        return [column.dp.sum(typed).alias("sum")], bounds, None
    if spec.statistic == "mean":
        return [column.dp.sum(typed).alias("sum"), _count()], bounds, None
    assert spec.quantile is not None
    candidates = _candidates(variable, bounds)
    return [column.dp.quantile(spec.quantile, candidates).alias("quantile")], bounds, candidates


def _plan(spec: QuerySpec, schema: DatasetSchema) -> _Plan:
    variables = {n: _variable(schema, n) for n in _needed(spec)}
    columns, domain = _domain(schema, variables)
    frame = _filtered(spec, variables, pl.LazyFrame(schema=columns))
    allowed = {f.variable: list(f.values) for f in spec.filters}
    group_columns = list(spec.group_by)
    key_lists: list[list[Any]] = []
    for name in spec.group_by:
        catalog = keys_of(variables[name]) or []
        key_lists.append([k for k in catalog if k in allowed[name]] if name in allowed else catalog)
    if spec.statistic == "histogram":
        assert spec.variable is not None
        assert spec.bins is not None
        edges = [float(e) for e in spec.bins]
        labels = bin_labels(edges)
        column = pl.col(spec.variable)
        frame = frame.filter((column >= edges[0]) & (column <= edges[-1])).with_columns(
            column.cut(edges[1:-1], labels=labels, left_closed=True).alias(BIN)
        )
        group_columns.append(BIN)
        key_lists.append(labels)
    exprs, bounds, candidates = _aggregates(spec, variables)
    keys: list[tuple[Any, ...]] = [()]
    for values in key_lists:
        keys = [(*k, v) for k in keys for v in values]
    if group_columns:
        key_frame = pl.LazyFrame(
            [
                pl.Series(
                    name, [k[i] for k in keys], dtype=pl.Categorical() if name == BIN else columns[name]
                )
                for i, name in enumerate(group_columns)
            ]
        )
        plan = key_frame.join(
            frame.group_by(group_columns).agg(exprs), on=group_columns, how="left", nulls_equal=True
        )
    else:
        plan = frame.select(exprs)
    return _Plan(columns, domain, plan, group_columns, keys, candidates, bounds)


def _summary(measurement: Any) -> dict[str, Output]:
    table = dp.summarize_polars_measurement(measurement, alpha=ALPHA)
    outputs: dict[str, Output] = {}
    for row in table.iter_rows(named=True):
        accuracy = row.get("accuracy")
        outputs[row["column"]] = Output(
            column=row["column"],
            aggregate=row["aggregate"],
            distribution=row["distribution"],
            scale=float(row["scale"]),
            accuracy_95=float(accuracy) if accuracy is not None and math.isfinite(accuracy) else None,
        )
    return outputs


def _build(plan: _Plan, global_scale: float) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return dp.m.make_private_lazyframe(
            plan.domain,
            dp.symmetric_distance(),
            dp.max_divergence(),
            plan.lazyframe,
            global_scale=global_scale,
        )


@dataclass(frozen=True)
class _Shape:
    """What a query's measurements share whatever ε: the plan, the loss at global scale 1 and each
    output's noise scale at global scale 1 (both proportional to the global scale)."""

    plan: _Plan
    unit_loss: float
    unit_outputs: dict[str, Output]


_CACHE: OrderedDict[tuple[str, str, str, int], Calibrated] = OrderedDict()
_SHAPES: OrderedDict[tuple[str, str, int], _Shape] = OrderedDict()
_CACHE_SIZE = 256
_CACHE_LOCK = threading.Lock()


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    with _CACHE_LOCK:
        cache[key] = value
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def _shape(spec: QuerySpec, schema: DatasetSchema, spec_key: str, schema_key: str, d_in: int) -> _Shape:
    key = (spec_key, schema_key, d_in)
    with _CACHE_LOCK:
        known = _SHAPES.get(key)
    if known is not None:
        return known
    plan = _plan(spec, schema)
    measurement = _build(plan, 1.0)
    shape = _Shape(plan, float(measurement.map(d_in)), _summary(measurement))
    _remember(_SHAPES, key, shape)
    return shape


def _accuracy(distribution: str, scale: float) -> float | None:
    if distribution == "Integer Laplace":
        return float(dp.discrete_laplacian_scale_to_accuracy(scale, ALPHA))
    if distribution == "Float Laplace":
        return float(dp.laplacian_scale_to_accuracy(scale, ALPHA))
    return None


def alpha_fraction(alpha: float, max_length: int = MAX_ROWS) -> tuple[int, int]:
    """α as OpenDP 0.16 scores it (``score_candidates_constants``): the exact fraction of the float
    when its denominator is below ``u64::MAX // max_length``, else that denominator and the nearest
    numerator. Scores, and so the selection's noise scale, are in units of ``1 / denominator``
    student."""
    exact = Fraction(alpha)
    finest = U64_MAX // max_length
    if exact.denominator < finest:
        return exact.numerator, exact.denominator
    return round(alpha * float(finest)), finest


def quantile_rank_accuracy(
    distribution: str, scale: float, alpha: float, candidates: int, *, beta: float = ALPHA
) -> float | None:
    """The quantile's data-free accuracy in students: with probability at least ``1 - beta`` the
    released candidate's rank misses the target by at most this many students more than the best
    candidate's does (None when the selection mechanism is not one this knows).

    OpenDP scores candidate ``c`` as ``den·|(1 - α)·#(x < c) - α·#(x > c)|`` (α = num/den, see
    :func:`alpha_fraction`). Without ties at ``c`` that is ``den·|#(x < c) - α·n|``: the distance,
    in students, between the number below ``c`` and the target rank α·n (with ties, the rank counts
    the share α of the students equal to ``c``). Under pure DP the lowest score is selected by
    permute-and-flip (report-noisy-min with exponential noise of ``scale``): visiting candidates in
    random order, each is accepted with probability ``exp(-g / scale)``, ``g`` its score minus the
    best's. A worse candidate is released only if it is visited before a best one (probability ½)
    and accepted, so with probability at most ``½·exp(-g / scale)``; over the at most ``|C| - 1``
    worse candidates, a score gap above ``t = scale·ln((|C| - 1) / (2·beta))`` has probability
    below ``beta``. (With Gumbel noise the logistic tail gives ``exp(-g / scale)``, without the ½.)
    In students: ``t / den`` (the scores count rows: students, at one row each). It holds for any
    data, per group, and depends on ε, the rows per student, α and the number of candidates only
    (``scale / den = 2·rows·max(α, 1 - α) / ε``).
    """
    tail = SELECTION_TAILS.get(distribution)
    if tail is None or candidates < 1:
        return None
    _, denominator = alpha_fraction(alpha)
    worse = candidates - 1
    if worse == 0:
        return 0.0
    return scale / denominator * max(math.log(worse / (tail * beta)), 0.0)


def _outputs(shape: _Shape, global_scale: float) -> dict[str, Output]:
    return {
        name: Output(
            column=unit.column,
            aggregate=unit.aggregate,
            distribution=unit.distribution,
            scale=unit.scale * global_scale,
            accuracy_95=_accuracy(unit.distribution, unit.scale * global_scale),
        )
        for name, unit in shape.unit_outputs.items()
    }


def calibrate(
    spec: QuerySpec, schema: DatasetSchema, epsilon: Decimal | float, *, rows_per_subject: int = 1
) -> Calibrated:
    """The measurement of ``spec`` whose privacy loss is at most (and close to) ``epsilon``.

    The first query of a shape (the spec without its ε) evaluates the privacy map at global scale 1;
    the loss being proportional to 1 / scale, the scale for ε follows, and the measurement built
    with it is checked with its own privacy map. Raises :class:`PrivacyCheckFailed` if that map says
    more than ε (nothing is released then).
    """
    if rows_per_subject < 1:
        raise ValueError("rows_per_subject is at least 1")
    target = float(epsilon)
    if not (math.isfinite(target) and target > 0):
        raise ValueError("epsilon must be positive")
    spec_key = spec.model_dump_json(exclude={"epsilon", "accuracy"})
    schema_key = schema.model_dump_json()
    key = (spec_key, schema_key, repr(target), rows_per_subject)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
    d_in = rows_per_subject
    shape = _shape(spec, schema, spec_key, schema_key, d_in)
    scale = shape.unit_loss / target * (1 + 1e-12)
    measurement = _build(shape.plan, scale)
    loss = float(measurement.map(d_in))
    for _ in range(3):
        if loss <= target * (1 + RELATIVE_TOLERANCE) and loss >= target * (1 - 1e-6):
            break
        scale *= loss / target * (1 + 1e-12)
        measurement = _build(shape.plan, scale)
        loss = float(measurement.map(d_in))
    if loss > target * (1 + RELATIVE_TOLERANCE):
        raise PrivacyCheckFailed(f"measurement loses ε = {loss} > {target} charged")
    plan = shape.plan
    outputs = _outputs(shape, scale)
    rank_accuracy = None
    if spec.quantile is not None and plan.candidates is not None and "quantile" in outputs:
        quantile = outputs["quantile"]
        rank_accuracy = quantile_rank_accuracy(
            quantile.distribution, quantile.scale, spec.quantile, len(plan.candidates)
        )
    calibrated = Calibrated(
        spec=spec,
        measurement=measurement,
        epsilon=target,
        loss=loss,
        global_scale=scale,
        group_columns=plan.group_columns,
        keys=plan.keys,
        columns=plan.columns,
        domain=plan.domain,
        outputs=outputs,
        candidates=plan.candidates,
        bounds=plan.bounds,
        rank_accuracy_95=rank_accuracy,
    )
    _remember(_CACHE, key, calibrated)
    return calibrated


def prepare(frame: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """The columns the measurement reads, typed as its domain says (no copy when already so)."""
    if frame.height > MAX_ROWS:
        raise DatasetTooLarge(frame.height)
    missing = [n for n in columns if n not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks {', '.join(missing)}")
    return frame.select(
        pl.col(n) if frame.schema[n] == dtype else pl.col(n).cast(dtype) for n, dtype in columns.items()
    )


def _flag(estimate: float | None, accuracy: float | None) -> bool | None:
    if estimate is None or accuracy is None:
        return None
    return accuracy > NOISE_DOMINATES_RATIO * abs(estimate)


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def release(
    spec: QuerySpec,
    schema: DatasetSchema,
    frame: pl.DataFrame,
    epsilon: Decimal,
    *,
    rows_per_subject: int = 1,
    frame_key: str | None = None,
) -> Release:
    """Run ``spec`` (already ``check``-ed) on ``frame`` and release it, losing at most ``epsilon``.

    ``frame`` holds the consenting students' rows (a ``pseudonym`` column identifies each student;
    rows beyond ``rows_per_subject`` of one student are dropped). The columns the query reads are
    handed to OpenDP once per frame and kept there (:mod:`dp_queries.resident`); pass
    ``frame_key`` (e.g. dataset, version and consent digest) when the same content comes as a new
    frame object each time, so it is handed over only once.
    """
    calibrated = calibrate(spec, schema, epsilon, rows_per_subject=rows_per_subject)
    if frame.height > MAX_ROWS:
        raise DatasetTooLarge(frame.height)
    result = resident.run(
        frame,
        lambda f: prepare(f, calibrated.columns),
        columns_key=repr(sorted(calibrated.columns.items())),
        domain=calibrated.domain,
        measurement=calibrated.measurement,
        rows_per_subject=rows_per_subject,
        frame_key=frame_key,
    )
    return _rows(calibrated, result)


def _rows(calibrated: Calibrated, result: pl.DataFrame) -> Release:
    spec = calibrated.spec
    by_key = {tuple(row[c] for c in calibrated.group_columns): row for row in result.iter_rows(named=True)}
    rows: list[dict[str, Any]] = []
    for key in calibrated.keys:
        row = by_key.get(key)
        if row is None:
            row = by_key.get(tuple(str(k) if isinstance(k, str) else k for k in key), {})
        out: dict[str, Any] = {
            ("bin" if name == BIN else name): value
            for name, value in zip(calibrated.group_columns, key, strict=True)
        }
        out.update(_estimate(calibrated, row))
        rows.append(out)
    details: dict[str, Any] = {}
    if calibrated.bounds is not None:
        details["bounds"] = list(calibrated.bounds)
    if calibrated.candidates is not None:
        details["candidates"] = {
            "count": len(calibrated.candidates),
            "step": grid_step(calibrated.candidates),
        }
    return Release(
        statistic=spec.statistic,
        epsilon_spent=calibrated.loss,
        rows=rows,
        group_by=list(spec.group_by),
        variable=spec.variable,
        details=details,
    )


def grid_step(candidates: list[float]) -> float | None:
    """The spacing of a quantile's candidates (None for a single one)."""
    return candidates[1] - candidates[0] if len(candidates) > 1 else None


def _estimate(calibrated: Calibrated, row: dict[str, Any]) -> dict[str, Any]:
    spec = calibrated.spec
    outputs = calibrated.outputs
    if spec.statistic == "mean":
        assert calibrated.bounds is not None
        total, count = _as_float(row.get("sum")), _as_float(row.get("count"))
        low, high = calibrated.bounds
        if total is None or count is None:
            return {"statistic": "mean", "estimate": None, "accuracy_95": None, "noise_dominates": None}
        size = max(count, 1.0)
        estimate = min(max(total / size, low), high)
        sum_acc: float = outputs["sum"].accuracy_95 or 0.0
        count_acc: float = outputs["count"].accuracy_95 or 0.0
        # First-order half-width of S/N from those of S and N (each at 95 %), capped by the bounds.
        accuracy = min((sum_acc + abs(estimate) * count_acc) / size, high - low)
        return {
            "statistic": "mean",
            "estimate": estimate,
            "accuracy_95": accuracy,
            "noise_dominates": count_acc > NOISE_DOMINATES_RATIO * size or _flag(estimate, accuracy),
        }
    column = {
        "count": "count",
        "crosstab": "count",
        "histogram": "count",
        "sum": "sum",
        "quantile": "quantile",
    }[spec.statistic]
    value = _as_float(row.get(column))
    half_width = outputs[column].accuracy_95 if column in outputs else None
    released: dict[str, Any] = {
        "statistic": spec.statistic,
        "estimate": value,
        "accuracy_95": half_width,
        "noise_dominates": _flag(value, half_width),
    }
    if spec.statistic == "quantile":
        # No ± in the variable's unit: the band of ranks (students), the same for every group.
        released["rank_accuracy_95"] = calibrated.rank_accuracy_95
    return released


def preview(spec: QuerySpec, schema: DatasetSchema, *, rows_per_subject: int = 1) -> Preview:
    """ε and the 95 % half-width per statistic, without data or budget (see :mod:`dp_queries.accuracy`)."""
    from dp_queries.accuracy import preview as _preview

    return _preview(spec, schema, rows_per_subject=rows_per_subject)
