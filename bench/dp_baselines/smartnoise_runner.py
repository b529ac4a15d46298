"""SmartNoise SQL on the benchmark's synthetic data, run in its own virtual environment.

``python smartnoise_runner.py DATA.parquet REPEATS EPSILON`` reads the Parquet file written by
``bench/dp.py``, loads it into SmartNoise's pandas reader (an in-memory SQLite database, not timed)
and times ``PrivateReader.execute`` for each statistic, printing one JSON object on stdout:
``{"versions": {...}, "statistics": {name: {"seconds": [...]} | {"error": "..."}}}``.

Metadata: one row per student (``max_ids: 1``, ``sample_max_ids: false`` since the data holds
one row each), row privacy off with ``student_ref`` as the private id, bounds on the score.
SmartNoise's default for grouped queries (``censor_dims``) thresholds the groups with δ.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from importlib.metadata import version
from typing import Any

QUERIES = {
    "count": "SELECT COUNT(*) AS n FROM bench.questionnaire",
    "grouped count": (
        "SELECT country, stage, COUNT(*) AS n FROM bench.questionnaire GROUP BY country, stage"
    ),
    "mean by country": ("SELECT country, AVG(engagement) AS mean FROM bench.questionnaire GROUP BY country"),
    "median": ("SELECT PERCENTILE_CONT(engagement) AS median FROM bench.questionnaire"),
}
METADATA = {
    "bench": {
        "bench": {
            "questionnaire": {
                "max_ids": 1,
                "row_privacy": False,
                "sample_max_ids": False,
                "student_ref": {"type": "string", "private_id": True},
                "country": {"type": "string"},
                "stage": {"type": "int"},
                "engagement": {"type": "float", "lower": 1.0, "upper": 5.0, "nullable": False},
            }
        }
    }
}


def main() -> None:
    """Time each query; a query SmartNoise refuses is reported with its error."""
    import pandas as pd
    import snsql

    path, repeats, epsilon = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    warnings.simplefilter("ignore")
    frame = pd.read_parquet(path, columns=["student_ref", "country", "stage", "engagement"])
    started = time.perf_counter()
    reader = snsql.from_df(frame, privacy=snsql.Privacy(epsilon=epsilon, delta=1e-6), metadata=METADATA)
    loaded = time.perf_counter() - started
    results: dict[str, Any] = {}
    for name, query in QUERIES.items():
        timings = []
        try:
            if repeats >= 5:
                reader.execute(query)  # warm-up (the data is in memory already; skipped for few runs)
            for _ in range(repeats):
                started = time.perf_counter()
                reader.execute(query)
                timings.append(time.perf_counter() - started)
        except Exception as error:  # reported in the output, not hidden
            results[name] = {"error": f"{type(error).__name__}: {error}"[:300]}
            continue
        results[name] = {"seconds": timings}
    versions = {p: version(p) for p in ("smartnoise-sql", "opendp", "pandas")}
    json.dump({"versions": versions, "load_seconds": loaded, "statistics": results}, sys.stdout)


if __name__ == "__main__":
    main()
