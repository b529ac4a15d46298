"""Accuracy before spending: the ± half-width at 95 % of each released value for a given ε, and the
ε needed for a requested accuracy. Neither touches data nor budget: both read the noise of the
calibrated measurement (built from the catalog's schema only).

* count, histogram, cross-tabulation: ± in students (integer Laplace noise), the same for every
  cell, whatever the data;
* sum: ± in the variable's unit (Laplace noise on the clipped sum);
* mean: the noisy sum divided by the noisy count; its half-width depends on the group's size, so
  the preview gives those of the sum and the count (the release then gives the mean's own, from
  the released count);
* quantile: one of the candidates (an even grid over the bounds, or every whole number), chosen by
  OpenDP's quantile score and permute-and-flip selection. No ± in the variable's unit holds for
  every dataset, but a band of ranks does: with 95 % probability the released value's rank (the
  students below it) is within ``rank_accuracy_95`` students of the target rank (α × the group's
  students), beyond what the grid itself misses by; and as the value is a candidate, it is also off
  by up to ``grid_half_step`` (half the spacing of the candidates) in the variable's unit. The
  group's size is not released with a quantile, so the band stays in students (see
  :func:`dp_queries.engine.quantile_rank_accuracy` for the derivation). A target accuracy cannot be
  turned into ε for a quantile (a ± in the variable's unit is not what it promises): give ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from dp_queries import dp
from dp_queries.engine import ALPHA, Calibrated, calibrate, grid_step
from dp_queries.spec import MAX_EPSILON, InvalidQuery, QuerySpec
from enclave.datasets.schemas import DatasetSchema

EPSILON_DIGITS = 3
"""A derived ε is rounded up to this many significant digits (so the accuracy is at least met)."""


@dataclass(frozen=True)
class Preview:
    """The ε of a query and the accuracy of what it would release."""

    epsilon: Decimal
    statistics: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """The form returned to the researcher."""
        return {
            "epsilon": str(self.epsilon),
            "confidence": 0.95,
            "statistics": [dict(s) for s in self.statistics],
        }


def _statistics(calibrated: Calibrated) -> list[dict[str, Any]]:
    spec = calibrated.spec
    outputs = calibrated.outputs
    if spec.statistic == "mean":
        return [
            {
                "name": "sum",
                "accuracy_95": outputs["sum"].accuracy_95,
                "distribution": outputs["sum"].distribution,
            },
            {
                "name": "count",
                "accuracy_95": outputs["count"].accuracy_95,
                "distribution": outputs["count"].distribution,
            },
        ]
    if spec.statistic == "quantile":
        output = outputs["quantile"]
        step = grid_step(calibrated.candidates or [])
        return [
            {
                "name": "quantile",
                "accuracy_95": None,
                "distribution": output.distribution,
                "rank_accuracy_95": calibrated.rank_accuracy_95,
                "grid_half_step": None if step is None else step / 2,
            }
        ]
    column = "sum" if spec.statistic == "sum" else "count"
    output = outputs[column]
    return [{"name": spec.statistic, "accuracy_95": output.accuracy_95, "distribution": output.distribution}]


def _headline(calibrated: Calibrated) -> float:
    """The half-width a target accuracy is compared with (the count's for a mean)."""
    statistics = _statistics(calibrated)
    value = statistics[0]["accuracy_95"] if len(statistics) == 1 else None
    if value is None:
        raise InvalidQuery(
            "accuracy",
            "this statistic has no data-free accuracy: give epsilon",
            code="accuracy_not_supported",
        )
    return float(value)


def epsilon_for(
    spec: QuerySpec, schema: DatasetSchema, accuracy: float, *, rows_per_subject: int = 1
) -> Decimal:
    """The smallest ε (rounded up to a few digits) whose 95 % half-width is at most ``accuracy``."""
    reference = calibrate(spec, schema, 1.0, rows_per_subject=rows_per_subject)
    _headline(reference)  # refuses statistics without a data-free accuracy
    # Calibration makes the noise scale proportional to 1/ε: the scale OpenDP says gives this
    # accuracy fixes ε; rounding up to a few digits is then checked (and nudged if need be).
    [output] = reference.outputs.values()
    if output.distribution == "Integer Laplace":
        wanted = dp.accuracy_to_discrete_laplacian_scale(float(accuracy), ALPHA)
    else:
        wanted = dp.accuracy_to_laplacian_scale(float(accuracy), ALPHA)
    epsilon = _round_up(output.scale / float(wanted))
    for _ in range(20):
        if epsilon > MAX_EPSILON:
            raise InvalidQuery(
                "accuracy",
                f"needs ε above the per-query maximum {MAX_EPSILON}: ask for a looser accuracy",
                code="accuracy_unreachable",
            )
        if _headline(calibrate(spec, schema, epsilon, rows_per_subject=rows_per_subject)) <= accuracy:
            return epsilon
        epsilon = _round_up(float(epsilon) * 1.01)
    raise InvalidQuery("accuracy", "no ε reaches this accuracy", code="accuracy_unreachable")


def _round_up(value: float) -> Decimal:
    exact = Decimal(repr(value))
    exponent = exact.adjusted() - EPSILON_DIGITS + 1
    return exact.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_CEILING).normalize()


def preview(spec: QuerySpec, schema: DatasetSchema, *, rows_per_subject: int = 1) -> Preview:
    """ε (given, or derived from the requested accuracy) and the 95 % half-width per statistic."""
    if spec.epsilon is not None:
        epsilon = spec.epsilon
    else:
        assert spec.accuracy is not None
        if not math.isfinite(spec.accuracy) or spec.accuracy <= 0:
            raise InvalidQuery("accuracy", "a positive number", code="accuracy_not_positive")
        epsilon = epsilon_for(spec, schema, spec.accuracy, rows_per_subject=rows_per_subject)
    calibrated = calibrate(spec, schema, epsilon, rows_per_subject=rows_per_subject)
    return Preview(epsilon=epsilon, statistics=_statistics(calibrated))
