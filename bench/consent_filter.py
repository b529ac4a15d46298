"""Frame cache and consent filter benchmark: what a release pays before OpenDP runs, at 18,000 students.

Set-up (not timed): the ingestion benchmark's world (a consenting roster of one country with status
rows cached, a declared dataset) and one ingested version.

Timed, each on its own: the first ``frames.get`` (decrypt the version into Polars), a cached
``frames.get`` (one catalog look-up), the first ``consenting`` (map pseudonyms to subjects and
derive every status), an unchanged ``consenting`` (the markers only), and ``consenting`` after a
decision was recorded (the statuses derived again, the pseudonym mapping kept).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def consent_filter_benchmark(url: str, students: int = 18_000, repeats: int = 50) -> dict[str, Any]:
    """Milliseconds of each step (medians of ``repeats`` for the repeated ones)."""
    from sqlalchemy import insert, select

    from bench.ingest import _decision, _prepare
    from consent.decisions.models import Decision
    from consent.forms.models import ConsentForm
    from consent.rosters.models import Student
    from dp_queries import consenting as filtering
    from enclave.datasets import ingestion
    from enclave.datasets.frames import FrameCache
    from infra.db import session_scope

    world = _prepare(url, students, Path(tempfile.mkdtemp(prefix="bench-consent-")))
    with session_scope(world["factory"]) as session:
        ingestion.ingest(
            session,
            world["steward"],
            world["store"],
            world["protector"],
            dataset_id="questionnaire-bench",
            data=world["upload"],
        )
    cache = FrameCache(max_bytes=2**30)
    store = world["store"]

    def timed(call: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        value = call()
        return (time.perf_counter() - started) * 1000, value

    with world["factory"]() as session:
        first_get, loaded = timed(lambda: cache.get(session, store, "questionnaire-bench"))
        session.commit()
    gets, unchanged = [], []
    with world["factory"]() as session:
        first_filter, result = timed(lambda: filtering.consenting(session, loaded))
        session.commit()
    for _ in range(repeats):
        with world["factory"]() as session:
            gets.append(timed(lambda: cache.get(session, store, "questionnaire-bench"))[0])
            unchanged.append(timed(lambda: filtering.consenting(session, loaded))[0])
            session.commit()
    derivations = filtering.counters.derivations
    with session_scope(world["factory"]) as session:
        # Any new decision (here another purpose's) makes the statuses be derived again.
        form = session.execute(select(ConsentForm)).scalars().first()
        student = session.execute(select(Student.id)).scalars().first()
        row = _decision(form.id, student, datetime.now(UTC), by=("student", None, form.texts[0].sha256))
        session.execute(insert(Decision), [{**row, "purpose": "interviews", "choice": "declined"}])
    with world["factory"]() as session:
        after_write, again = timed(lambda: filtering.consenting(session, loaded))
    world["engine"].dispose()
    if filtering.counters.derivations != derivations + 1 or again.digest != result.digest:
        raise RuntimeError("the filter did not derive again after a decision, or changed its answer")
    return {
        "rows": loaded.frame.height,
        "excluded": result.excluded,
        "first_get_ms": first_get,
        "cached_get_ms": statistics.median(gets),
        "first_filter_ms": first_filter,
        "unchanged_filter_ms": statistics.median(unchanged),
        "filter_after_a_decision_ms": after_write,
    }


if __name__ == "__main__":
    import sys

    print(consent_filter_benchmark(sys.argv[1]))
