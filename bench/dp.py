"""DP queries benchmark: four statistics released by the engine, against Polars, OpenDP and SmartNoise SQL.

On the synthetic questionnaire (``enclave.synthetic.generate``) at 18,000 and 2,000,000 students, the
same four statistics — a count, a count grouped by country × stage, the mean score by country and
the median score (``engagement``, bounded 1–5) — are timed side by side, each query a released
statistic:

* **plain Polars**: the same aggregate on the same in-memory frame, no privacy (the floor);
* **this engine**: ``dp_queries.engine.release`` from the researcher's JSON spec to the released
  result (spec parsed and checked, measurement built and run, result serialised), on the frame as
  the decrypted-frame cache holds it;
* **OpenDP default**: ``Context.query(...).release()`` of OpenDP 0.16 with its default calibration
  (a search for the noise scale per query), on a ``Context`` built once from ``pl.scan_parquet``
  of a temporary Parquet file of the same data; only the query and release are timed;
* **SmartNoise SQL** in its own virtual environment (it pins an older opendp): the runner
  ``bench/dp_baselines/smartnoise_runner.py`` reads the same Parquet file into SmartNoise's pandas
  reader (an in-memory SQLite database, not timed) and times ``PrivateReader.execute``.

Every system spends ε = 1 per query. Set-up (data generation, Parquet, contexts) is never timed.
The HTTP measurement (``http_benchmark``) serves the product and posts the same specs to
``POST /api/dp/queries`` with a researcher's token, on PostgreSQL, budget and consent checked.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
BASELINES = Path(__file__).parent / "dp_baselines"
SMARTNOISE_VENV = ROOT / "var" / "bench-venvs" / "smartnoise"
EPSILON = 1.0
DATASET = "questionnaire-dp-bench"
COUNTRIES = ["BE", "BG", "ES", "PL", "PT", "IT"]
SCORE = (1.0, 5.0)
MAX_LENGTH = 10_000_000
"""A public upper bound on the number of rows (OpenDP needs one for sums)."""


@dataclass(frozen=True)
class Statistic:
    """One benchmarked statistic: the engine's spec and the equivalent queries of the other systems."""

    name: str
    spec: dict[str, Any]
    polars: Callable[[pl.DataFrame], pl.DataFrame]
    opendp: Callable[[Any], Any]
    """Builds the OpenDP query from ``context.query()``."""


def _statistics() -> list[Statistic]:
    import opendp.prelude as dp

    score = pl.col("engagement")
    # The same grid as the engine's quantiles: 101 evenly spaced candidates over the bounds.
    candidates = [SCORE[0] + i * (SCORE[1] - SCORE[0]) / 100 for i in range(101)]
    return [
        Statistic(
            "count",
            {"statistic": "count"},
            lambda f: f.select(pl.len()),
            lambda q: q.select(dp.len()),
        ),
        Statistic(
            "grouped count (country × stage)",
            {"statistic": "count", "group_by": ["country", "stage"]},
            lambda f: f.group_by("country", "stage").len(),
            lambda q: q.group_by("country", "stage").agg(dp.len()),
        ),
        Statistic(
            "mean score by country",
            {"statistic": "mean", "variable": "engagement", "group_by": ["country"]},
            lambda f: f.group_by("country").agg(score.mean()),
            lambda q: q.group_by("country").agg(score.fill_null(3.0).dp.mean(SCORE)),
        ),
        Statistic(
            "median score",
            {"statistic": "quantile", "variable": "engagement", "quantile": 0.5},
            lambda f: f.select(score.median()),
            lambda q: q.select(score.fill_null(3.0).dp.median(candidates)),
        ),
    ]


def schema() -> Any:
    """The benchmark dataset's declared schema (the catalog's public keys and bounds)."""
    from enclave.datasets.schemas import DatasetSchema

    return DatasetSchema.model_validate(schema_dict())


def schema_dict() -> dict[str, Any]:
    """The schema as a data steward declares it."""
    return {
        "subject_id_column": "student_ref",
        "school_column": "school",
        "variables": [
            {"name": "country", "type": "categorical", "categories": COUNTRIES},
            {"name": "stage", "type": "integer", "min": 1, "max": 4},
            {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
            {"name": "engagement", "type": "numeric", "min": SCORE[0], "max": SCORE[1]},
            {"name": "attendance_pct", "type": "numeric", "min": 0, "max": 100},
            {"name": "left_school_early", "type": "boolean"},
        ],
    }


VARIABLES = ["country", "stage", "gender", "engagement", "attendance_pct", "left_school_early"]


def questionnaire(students: int, seed: int = 11) -> pl.DataFrame:
    """The synthetic questionnaire as the frame cache holds it: ``pseudonym`` and the typed variables."""
    from enclave.synthetic import generate

    data = generate(students=students, seed=seed).questionnaire
    return data.select(pl.col("student_ref").alias("pseudonym"), *VARIABLES)


def summary(seconds: list[float]) -> dict[str, float]:
    """Median and 95th percentile, in milliseconds."""
    return {
        "median": statistics.median(seconds) * 1000,
        "p95": float(np.percentile(seconds, 95)) * 1000,
        "runs": len(seconds),
    }


def _timed(call: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def polars_benchmark(frame: pl.DataFrame, repeats: int) -> dict[str, dict[str, float]]:
    """The floor: each aggregate in plain Polars on the in-memory frame."""
    return {s.name: summary(_timed(lambda s=s: s.polars(frame), repeats)) for s in _statistics()}


def engine_benchmark(frame: pl.DataFrame, repeats: int) -> dict[str, Any]:
    """The engine from the researcher's JSON spec to the released (serialised) result.

    Each run asks a slightly different ε (1.000001, 1.000002, ...), so each one calibrates its
    measurement as a new query does; ``"cached"`` holds the same runs at the same ε each time, when
    the engine reuses the calibration of an earlier query of the same shape.
    """
    from dp_queries import engine
    from dp_queries.spec import QuerySpec, check

    declared = schema()
    allowed = [v.name for v in declared.variables]
    results: dict[str, Any] = {"cached": {}}
    counter = iter(range(1, 10**6))
    for stat in _statistics():

        def release(stat: Statistic = stat, fresh: bool = True) -> dict[str, Any]:
            epsilon = Decimal(EPSILON) + (Decimal(next(counter)) / 10**6 if fresh else 0)
            spec = QuerySpec.model_validate({"dataset": DATASET, **stat.spec, "epsilon": str(epsilon)})
            check(spec, declared, allowed)
            assert spec.epsilon is not None
            answer: dict[str, Any] = engine.release(spec, declared, frame, spec.epsilon).to_json()
            return answer

        results[stat.name] = summary(_timed(release, repeats, warmup=2))
        results["cached"][stat.name] = summary(_timed(lambda s=stat: release(s, False), repeats))
    return results


def opendp_benchmark(parquet: Path, repeats: int) -> dict[str, dict[str, float]]:
    """OpenDP's ``Context.query(...).release()`` with its default calibration, ε per query."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    margins = [
        dp.polars.Margin(by=[], max_length=MAX_LENGTH, max_groups=1),
        dp.polars.Margin(by=["country"], invariant="keys", max_length=MAX_LENGTH, max_groups=6),
        dp.polars.Margin(by=["country", "stage"], invariant="keys", max_length=MAX_LENGTH, max_groups=24),
    ]
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notice that counts will become signed
        for stat in _statistics():
            seconds = []
            for _ in range(repeats):  # no warm-up: each release searches for its noise scale again
                # A Context per query, built outside the timing: one compositor spends ε = 1 once.
                context = dp.Context.compositor(
                    data=pl.scan_parquet(parquet),
                    privacy_unit=dp.unit_of(contributions=1),
                    privacy_loss=dp.loss_of(epsilon=EPSILON),
                    split_evenly_over=1,
                    margins=margins,
                )
                started = time.perf_counter()
                stat.opendp(context.query()).release().collect()
                seconds.append(time.perf_counter() - started)
            results[stat.name] = summary(seconds)
    return results


def smartnoise_python() -> Path:
    """The SmartNoise virtual environment's interpreter, created (or updated) from the pinned requirements."""
    requirements = BASELINES / "requirements.txt"
    python = SMARTNOISE_VENV / "bin" / "python"
    stamp = SMARTNOISE_VENV / "requirements.txt"
    wanted = requirements.read_text(encoding="utf-8")
    if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return python
    uv = shutil.which("uv") or shutil.which(str(ROOT / ".tools" / "bin" / "uv"))
    base = getattr(sys, "_base_executable", sys.executable)
    if uv:
        subprocess.run([uv, "venv", "-q", "--clear", "--python", base, str(SMARTNOISE_VENV)], check=True)
        install = [uv, "pip", "install", "-q", "--python", str(python), "-r", str(requirements)]
    else:
        if SMARTNOISE_VENV.exists():
            shutil.rmtree(SMARTNOISE_VENV)
        subprocess.run([base, "-m", "venv", str(SMARTNOISE_VENV)], check=True)
        install = [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)]
    subprocess.run(install, check=True)
    stamp.write_text(wanted, encoding="utf-8")
    return python


def smartnoise_benchmark(parquet: Path, repeats: int) -> dict[str, Any]:
    """SmartNoise SQL's ``PrivateReader.execute`` on the same data, in its own virtual environment."""
    runner = BASELINES / "smartnoise_runner.py"
    finished = subprocess.run(
        [str(smartnoise_python()), str(runner), str(parquet), str(repeats), str(EPSILON)],
        check=True,
        capture_output=True,
        text=True,
    )
    answer = json.loads(finished.stdout)
    names = [s.name for s in _statistics()]
    results: dict[str, Any] = {"versions": answer["versions"], "load_seconds": answer["load_seconds"]}
    for name, measured in zip(names, answer["statistics"].values(), strict=True):
        results[name] = summary(measured["seconds"]) if "seconds" in measured else measured
    return results


@contextmanager
def _parquet(frame: pl.DataFrame) -> Iterator[Path]:
    """The frame as a temporary Parquet file (synthetic data only), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-dp-") as folder:
        path = Path(folder) / "questionnaire.parquet"
        frame.rename({"pseudonym": "student_ref"}).write_parquet(path)
        yield path


def size_benchmark(students: int, repeats: dict[str, int]) -> dict[str, Any]:
    """Every system on one size of the synthetic questionnaire."""
    frame = questionnaire(students)
    results: dict[str, Any] = {"students": frame.height}
    results["polars"] = polars_benchmark(frame, repeats["polars"])
    try:
        results["engine"] = engine_benchmark(frame, repeats["engine"])
    except ImportError as missing:
        results["engine"] = {"error": f"not available: {missing}"}
    with _parquet(frame) as parquet:
        results["opendp"] = opendp_benchmark(parquet, repeats["opendp"])
        results["smartnoise"] = smartnoise_benchmark(parquet, repeats["smartnoise"])
    return results


PLANS: dict[str, dict[int, dict[str, int]]] = {
    "full": {
        18_000: {"polars": 50, "engine": 50, "opendp": 5, "smartnoise": 5},
        2_000_000: {"polars": 20, "engine": 20, "opendp": 5, "smartnoise": 3},
    },
    "quick": {
        3_000: {"polars": 10, "engine": 10, "opendp": 1, "smartnoise": 1},
        30_000: {"polars": 10, "engine": 10, "opendp": 1, "smartnoise": 1},
    },
}
"""Runs per size and system (each after warm-ups, except OpenDP's default release which has none)."""


def _cell(measured: dict[str, Any] | None) -> str:
    if measured is None:
        return "—"
    if "error" in measured:
        return "not supported¹" if "rewrite aggregate" in measured["error"] else "failed²"
    return f"{_ms(measured['median'])} / {_ms(measured['p95'])}"


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 1:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _http_cell(http: dict[int, dict[str, Any]] | str, measured: dict[str, Any] | None) -> str:
    if isinstance(http, str):
        return "TODO³"
    return _cell(measured) if measured else "—⁴"


def _ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    if not numerator or not denominator or "median" not in numerator or "median" not in denominator:
        return None
    return float(numerator["median"]) / float(denominator["median"])


def _times(ratio: float | None, bold_if: Callable[[float], bool] | None = None) -> str:
    if ratio is None:
        return "—"
    text = f"{ratio:,.1f}×" if ratio < 100 else f"{ratio:,.0f}×"
    return f"**{text}**" if bold_if and bold_if(ratio) else text


def _cpu() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(encoding="utf-8").splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else "unknown CPU"


def report(quick: bool) -> list[str]:
    """Run every size and return the section's Markdown: the side-by-side table and the targets."""
    import os

    plan = PLANS["quick" if quick else "full"]
    load = os.getloadavg()[0]
    runs = [size_benchmark(size, repeats) for size, repeats in plan.items()]
    http = http_benchmark(next(iter(plan)), quick)
    names = [s.name for s in _statistics()]
    versions = runs[0]["smartnoise"]["versions"]
    counts = "; ".join(
        f"{size:,} students: {r['engine']} (engine), {r['polars']} (Polars), {r['opendp']} (OpenDP), "
        f"{r['smartnoise']} (SmartNoise)"
        for size, r in plan.items()
    )
    lines = [
        f"{_cpu()}; load average at the start: {load:.1f}. ε = {EPSILON:g} per query for every system; "
        f"SmartNoise SQL {versions['smartnoise-sql']} on opendp {versions['opendp']}. Median / p95 of "
        f"{counts}; {HTTP_REPEATS['quick' if quick else 'full']} through HTTP.",
        "",
        "| students | statistic | plain Polars | this engine | engine via HTTP | OpenDP default "
        "| SmartNoise SQL | engine ÷ Polars | OpenDP ÷ engine | SmartNoise ÷ engine |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    errors: set[str] = set()
    for run in runs:
        engine = run["engine"] if "error" not in run["engine"] else {}
        via_http = http.get(run["students"], {}) if isinstance(http, dict) else {}
        for name in names:
            mine = engine.get(name)
            noted = run["smartnoise"].get(name, {})
            if "error" in noted:
                errors.add(noted["error"])
            lines.append(
                f"| {run['students']:,} | {name} | {_cell(run['polars'][name])} | **{_cell(mine)}** "
                f"| {_http_cell(http, via_http.get(name))} | {_cell(run['opendp'][name])} "
                f"| {_cell(noted)} | {_times(_ratio(mine, run['polars'][name]), lambda r: r <= 4)} "
                f"| {_times(_ratio(run['opendp'][name], mine), lambda r: r >= 10)} "
                f"| {_times(_ratio(noted, mine), lambda r: r >= 10)} |"
            )
    lines.append("")
    for run in runs:
        if "cached" in run["engine"]:
            cached = ", ".join(f"{n} {_ms(m['median'])}" for n, m in run["engine"]["cached"].items())
            lines.append(
                f"This engine at {run['students']:,} students when the same ε was asked before "
                f"(calibration reused), medians: {cached}."
            )
    lines.append("")
    for error in sorted(errors):
        lines.append(f"¹ SmartNoise SQL has no private quantile: `{error}`.")
    if not isinstance(http, dict) or not http:
        reason = http if isinstance(http, str) else "the HTTP API is not served yet"
        lines.append(f"³ Not measured: {reason}.")
    else:
        for students, served in http.items():
            lines.append(
                f"Through HTTP: {students:,} students on one country's roster, {served['stored']:,} "
                f"stored with consent at ingestion, {served['withdrawn']:,} of them withdrawn since "
                "(dropped before every release)."
            )
            if "reused" in served:
                again = ", ".join(f"{n} {_ms(m['median'])}" for n, m in served["reused"].items())
                lines.append(
                    "The same query asked again through HTTP (every check, frame and consent filter, then "
                    f"the stored release returned at no cost), medians: {again}."
                )
        lines.append(
            "⁴ Through HTTP at the smaller size only: above 500,000 rows "
            "(`ENCLAVE_DP_ASYNC_ROW_THRESHOLD`) a query answers 202 and runs on the worker."
        )
    lines += ["", *_targets(runs, http if isinstance(http, dict) else {})]
    return lines


def _met(values: dict[str, float], good: Callable[[float], bool], show: Callable[[float], str]) -> str:
    """``count 5.2 ms, mean 3.1 ms`` and ``met for 3 of 4`` (the ones missing named)."""
    missed = [n for n, v in values.items() if not good(v)]
    measured = ", ".join(f"{n} {show(v)}" for n, v in values.items())
    if not missed:
        return f"{measured} | **met**"
    if len(missed) == len(values):
        return f"{measured} | **not met**"
    return f"{measured} | **met for {len(values) - len(missed)} of {len(values)}** (not: {', '.join(missed)})"


def _targets(runs: list[dict[str, Any]], http: dict[int, dict[str, Any]]) -> list[str]:
    small, large = runs[0], runs[-1]
    names = [s.name for s in _statistics()]
    lines = ["| what | measured | result | target |", "|---|---|---|---|"]
    engine = small["engine"] if "error" not in small["engine"] else {}
    if engine:
        medians = {n: engine[n]["median"] for n in names}
        lines.append(
            f"| this engine at {small['students']:,} students, median per released statistic (new ε) "
            f"| {_met(medians, lambda v: v < 25, _ms)} | < 25 ms |"
        )
    via_http = http.get(small["students"])
    if via_http:
        medians = {n: via_http[n]["median"] for n in names}
        lines.append(
            f"| through `POST /api/dp/queries` at {small['students']:,} students (token, project, budget, "
            f"consent, ledger), median | {_met(medians, lambda v: v < 100, _ms)} | < 100 ms |"
        )
    big = large["engine"] if "error" not in large["engine"] else {}
    if big:
        ratios = {n: _ratio(big[n], large["polars"][n]) or 0.0 for n in names}
        lines.append(
            f"| engine ÷ plain Polars at {large['students']:,} students (medians) "
            f"| {_met(ratios, lambda r: r <= 4, _times)} | ≤ 4× |"
        )
    for system, label in (("opendp", "OpenDP default release"), ("smartnoise", "SmartNoise SQL")):
        for run in runs:
            if "error" in run["engine"]:
                continue
            ratios = {n: r for n in names if (r := _ratio(run[system].get(n), run["engine"][n])) is not None}
            if ratios:
                lines.append(
                    f"| {label} ÷ engine at {run['students']:,} students (medians) "
                    f"| {_met(ratios, lambda r: r >= 10, _times)} | ≥ 10× |"
                )
    return lines


HTTP_REPEATS = {"quick": 5, "full": 30}


def _http_world(url: str, students: int, folder: Path) -> dict[str, Any]:
    """A migrated database with a consenting roster, the dataset ingested, and a researcher's project.

    ``students`` synthetic students of one country (the roster is imported per country), every 20th
    without consent for ``questionnaires`` (their rows are dropped before each release). Not timed.
    """
    from enclave.components import import_wiring
    from infra.db import make_engine, make_session_factory
    from infra.migrate import upgrade

    import_wiring()
    engine = make_engine(url)
    upgrade(engine)
    try:
        factory = make_session_factory(engine)
        counts = _consenting_roster_and_dataset(factory, students, folder)
        return {**_researcher_project(factory), **counts}
    finally:
        engine.dispose()


def _consenting_roster_and_dataset(factory: Any, students: int, folder: Path) -> dict[str, int]:
    from sqlalchemy import insert, select

    from access.audit.actions import Role
    from access.principal import Principal
    from bench.ingest import _decision
    from consent.decisions import ages, status_cache
    from consent.decisions.models import Decision
    from consent.identity import IdentityProtector
    from consent.rosters.importing import import_students
    from consent.rosters.importing_guardians import import_guardians
    from consent.rosters.models import Guardianship, Student
    from enclave.datasets import ingestion
    from enclave.datasets import service as catalog
    from enclave.datasets.schemas import DatasetCreate
    from enclave.objects.store import EncryptedStore
    from enclave.synthetic import generate
    from infra.db import session_scope
    from infra.keys import FileKeyBackend
    from infra.storage.local import LocalStorage
    from tests.support.consent import load_rules, make_form

    keys = FileKeyBackend(folder / "keys")
    data = generate(students=students * 7, schools=140, seed=13)
    roster = data.students.filter(pl.col("country") == "ES").head(students)
    codes = roster["student_ref"].to_list()
    steward = Principal(account_id="bench-steward", roles=frozenset({Role.data_steward}), country="ES")
    protector = IdentityProtector(keys)
    now = datetime.now(UTC)
    with session_scope(factory) as session:
        load_rules(session)
        form = make_form(session, "ES", "es")
        import_students(session, steward, protector, roster.write_csv().encode())
        guardians_csv = data.guardians.filter(pl.col("student_ref").is_in(codes)).write_csv().encode()
        import_guardians(session, steward, protector, guardians_csv)
        texts = {t.audience: t.sha256 for t in form.texts}
        guardians = dict(session.execute(select(Guardianship.student_id, Guardianship.guardian_id)).all())
        rows: list[dict[str, Any]] = []
        query = select(Student.id, Student.birth_year, Student.birth_month).order_by(Student.id)
        for number, (student_id, birth_year, birth_month) in enumerate(session.execute(query).all()):
            if number % 20 == 19:
                continue
            guardian = ("guardian", guardians[student_id], texts["guardian"])
            rows.append(_decision(form.id, student_id, now, by=guardian))
            if ages.age_on(birth_year, birth_month, now.date()) >= 7:
                rows.append(_decision(form.id, student_id, now, by=("student", None, texts["child"])))
        session.execute(insert(Decision), rows)
    with session_scope(factory) as session:
        status_cache.refresh(session)
        catalog.create_dataset(
            session,
            steward,
            DatasetCreate.model_validate(
                {
                    "id": DATASET,
                    "title": "DP benchmark questionnaire",
                    "purpose": "questionnaires",
                    "domain": "bench",
                    "retention_until": (now + timedelta(days=365)).date().isoformat(),
                    "schema": schema_dict(),
                }
            ),
        )
        upload = data.questionnaire.filter(pl.col("student_ref").is_in(codes))
        report = ingestion.ingest(
            session,
            steward,
            EncryptedStore(None, keys, LocalStorage(folder / "objects")),
            protector,
            dataset_id=DATASET,
            data=upload.select("student_ref", "school", *VARIABLES).write_csv().encode(),
        )
    return {"stored": int(report.rows_stored), "withdrawn": _withdraw(factory, rows)}


def _withdraw(factory: Any, decisions: list[dict[str, Any]]) -> int:
    """Every 50th consenting student withdraws after ingestion (their rows are dropped at release)."""
    from sqlalchemy import insert

    from consent.decisions import status_cache
    from consent.decisions.models import Decision
    from infra.db import session_scope

    now = datetime.now(UTC)
    withdrawals = [
        {**row, "event_id": str(uuid.uuid4()), "choice": "withdrawn", "recorded_at": now}
        for row in decisions
        if row["student_id"] % 50 == 0
    ]
    students = sorted({row["student_id"] for row in withdrawals})
    with session_scope(factory) as session:
        session.execute(insert(Decision), withdrawals)
        status_cache.refresh(session, students)
    return len(students)


def _researcher_project(factory: Any) -> dict[str, Any]:
    """A researcher account and an active project granted ε = 1000 on the dataset's variables."""
    from access.accounts import service as accounts
    from access.accounts.schemas import AccountCreate
    from access.audit.actions import Role
    from access.audit.service import Actor
    from access.principal import Principal
    from access.projects import service as projects
    from access.projects.rules import utc_today
    from infra.db import session_scope
    from tests.support.projects import proposal

    email, password = "dp.researcher@example.org", "bench-Researcher-2026-long"
    with session_scope(factory) as session:
        account = accounts.create_account(
            session,
            Actor.system(),
            AccountCreate(
                email=email,
                display_name="Benchmark researcher",
                roles=[Role.researcher],
                country=None,
                schools=[],
                password=password,
            ),
        )
        owner = Principal(account_id=account.id, roles=frozenset({Role.researcher}))
        variables = [f"{DATASET}.{name}" for name in VARIABLES]
        project = projects.create_project(session, owner, proposal(datasets=[DATASET], variables=variables))
        project.status = "active"
        project.review_round = 1
        project.granted_epsilon = Decimal(1000)
        project.allowed_datasets = [DATASET]
        project.allowed_variables = variables
        project.granted_end_date = utc_today() + timedelta(days=300)
        project.approved_at = datetime.now(UTC)
        session.flush()
        return {"email": email, "password": password, "project_id": project.id}


def _served_releases(base: str, world: dict[str, Any], repeats: int) -> dict[str, Any]:
    import httpx

    answer = httpx.post(
        f"{base}/api/auth/token", data={"username": world["email"], "password": world["password"]}
    )
    answer.raise_for_status()
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    results = {}
    request = 0
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for stat in _statistics():
            seconds = []
            for attempt in range(repeats + 2):  # two warm-ups: the first loads the frame cache
                request += 1
                # A different ε each time: an identical spec would return the stored release.
                epsilon = Decimal(EPSILON) + Decimal(request) / 10_000
                body = {
                    "project_id": world["project_id"],
                    "spec": {"dataset": DATASET, **stat.spec, "epsilon": str(epsilon)},
                }
                started = time.perf_counter()
                response = http.post("/api/dp/queries", json=body)
                elapsed = time.perf_counter() - started
                if response.status_code != 200 or response.json().get("reused"):
                    raise RuntimeError(f"{stat.name}: {response.status_code} {response.text[:300]}")
                if attempt >= 2:
                    seconds.append(elapsed)
            results[stat.name] = summary(seconds)
            # The last query again: every check, the frame and the consent filter, then the stored release.
            replays = []
            for _ in range(repeats):
                started = time.perf_counter()
                response = http.post("/api/dp/queries", json=body)
                replays.append(time.perf_counter() - started)
                if response.status_code != 200 or not response.json().get("reused"):
                    raise RuntimeError(f"{stat.name} again: {response.status_code} {response.text[:300]}")
            results.setdefault("reused", {})[stat.name] = summary(replays)
    return results


@contextmanager
def _serve(database_url: str, data_dir: Path) -> Iterator[str]:
    """The product in one uvicorn process (as ``bench.server.serve``, waiting longer for start-up:
    importing the app takes seconds, and much longer on a busy machine)."""
    import os

    from tests.support.processes import free_port, stop, wait_for_http

    port = free_port()
    env = {
        **os.environ,
        "ENCLAVE_ENVIRONMENT": "test",
        "ENCLAVE_DATA_DIR": str(data_dir),
        "ENCLAVE_DATABASE_URL": database_url,
        "ENCLAVE_LOG_LEVEL": "WARNING",
    }
    log = data_dir / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "enclave.app:create_app", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", server, log, timeout=300)
        yield base
    finally:
        stop(server)


def http_benchmark(students: int, quick: bool) -> dict[int, dict[str, Any]] | str:
    """Each statistic through ``POST /api/dp/queries`` on the served product (or why it was not measured).

    One client, one request at a time over keep-alive: the latency a researcher sees, with the token
    checked, the project, dataset and variables checked, the budget locked and charged, the frame
    from the cache, subjects without consent dropped, the release stored and the ledger entry written.
    """
    import importlib.util

    from bench.run import drop_database, fresh_database

    if importlib.util.find_spec("dp_queries.router") is None:
        return "`POST /api/dp/queries` is not part of the product yet"
    repeats = HTTP_REPEATS["quick" if quick else "full"]
    url = fresh_database("enclave_bench_dp")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dp-http-") as folder:
            world = _http_world(url, students, Path(folder))
            with _serve(url, Path(folder)) as base:
                measured = _served_releases(base, world, repeats)
    finally:
        drop_database("enclave_bench_dp")
    return {students: {"stored": world["stored"], "withdrawn": world["withdrawn"], **measured}}
