"""The seeded demo's start-up, as a newcomer runs it: ``enclave demo --no-serve`` in a fresh process.

``make demo`` runs ``.venv/bin/enclave demo`` from the repository's folder with no ``ENCLAVE_*``
setting, so the product uses its embedded default under ``var/``: an SQLite file, encrypted local
object files and key files. The benchmark runs the same entry point the same way, except that
``ENCLAVE_DATA_DIR`` points at a fresh temporary folder (so the seed really runs, and the
developer's own ``var/`` is left alone) and ``--no-serve`` makes it exit once seeded. It times:

* the **first start**, from launch to exit: migrations, keys, country rules and consent forms, then
  the whole seed (staff accounts, rosters, consent decisions, six questionnaire datasets ingested,
  the approved project), with the process's peak resident memory (``wait4``'s ``ru_maxrss``);
* a **second start** on the same folder: the seed is found and nothing is added.

Python's bytecode cache is on and starts empty, as on a newcomer's machine: the first start compiles
the product and its libraries and caches them, the second reuses them. The cache goes to a fresh
folder of its own (``PYTHONPYCACHEPREFIX``), so nothing compiled before counts, nothing is written
into the repository, and a ``PYTHONDONTWRITEBYTECODE`` of the caller's environment is dropped.

The seed's own breakdown by step (wall and CPU seconds, as ``enclave demo`` prints it) is kept too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = Path(sys.executable).parent / "enclave"
"""The console script ``make demo`` runs (``.venv/bin/enclave``)."""
QUICK = ("--students", "600", "--schools", "12")


def _environment(data_dir: Path, bytecode: Path) -> dict[str, str]:
    """The caller's environment without any product setting, with the fresh data folder, and Python's
    bytecode cache on, in a fresh folder of its own (as on a newcomer's machine: nothing compiled yet)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ENCLAVE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(bytecode)
    env["ENCLAVE_DATA_DIR"] = str(data_dir)
    return env


def start(data_dir: Path, bytecode: Path, log: Path, options: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``enclave demo --no-serve`` from launch to exit: wall time, peak memory, what it printed."""
    command = [str(ENTRY_POINT), "demo", "--no-serve", *options]
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=_environment(data_dir, bytecode), stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory, not the runner's
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` exited with {process.returncode}:\n{output[-4000:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "output": output}


def _number(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1).replace(",", "")) if found else None


def demo_benchmark(quick: bool = False) -> dict[str, Any]:
    """A first start on a fresh data folder, then a second start on the same folder."""
    folder = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    try:
        data_dir, bytecode = folder / "var", folder / "pycache"
        load_before = os.getloadavg()
        first = start(data_dir, bytecode, folder / "first.log", QUICK if quick else ())
        if "seeded in" not in first["output"] or not (data_dir / "enclave.db").exists():
            raise RuntimeError(f"the first start did not seed the fresh folder:\n{first['output'][-4000:]}")
        second = start(data_dir, bytecode, folder / "second.log", QUICK if quick else ())
        if "seeded before: nothing to do" not in second["output"]:
            raise RuntimeError(f"the second start did not find the seed:\n{second['output'][-4000:]}")
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    text = first["output"]
    steps = re.search(r"steps \(wall / CPU seconds\): (.*)", text)
    return {
        "first": first,
        "second": second,
        "students": _number(r"seeded in [0-9.]+ s: ([0-9,]+) students", text),
        "decisions": _number(r"([0-9,]+) consent decisions", text),
        "rows_stored": _number(r"([0-9,]+) consenting rows stored", text),
        "seed_seconds": _number(r"seeded in ([0-9.]+) s", text),
        "steps": steps.group(1).strip() if steps else "",
        "load_before": load_before,
        "load_after": load_after,
    }


def report(quick: bool) -> list[str]:
    """The section's lines for bench/README.md (its own table: the demo runs on SQLite, not PostgreSQL)."""
    result = demo_benchmark(quick)
    first, second = result["first"], result["second"]
    students = f"{result['students']:,.0f}" if result["students"] is not None else "?"
    decisions = f"{result['decisions']:,.0f}" if result["decisions"] is not None else "?"
    rows = f"{result['rows_stored']:,.0f}" if result["rows_stored"] is not None else "?"
    seed = f"{result['seed_seconds']:.1f} s" if result["seed_seconds"] is not None else "?"
    before = ", ".join(f"{v:.2f}" for v in result["load_before"])
    after = ", ".join(f"{v:.2f}" for v in result["load_after"])
    return [
        "The demo runs on its embedded default (SQLite file, encrypted local files, key files, tasks "
        "in-process), not on PostgreSQL.",
        "",
        "| what | measured | result | target |",
        "|---|---|---|---|",
        f"| `enclave demo --no-serve` on a fresh data folder, in a fresh process, launch to exit: "
        f"migrations, keys, rules and forms, then the seed ({students} students, {decisions} consent "
        f"decisions, 6 datasets with {rows} rows stored, the approved project) "
        f"| {first['seconds']:.1f} s (the seed itself {seed}), peak memory {first['peak_rss_mib']:,.0f} MiB "
        f"| **{first['seconds']:.1f} s** | < 60 s |",
        f"| second start on the same folder (seed found, nothing added), launch to exit "
        f"| {second['seconds']:.1f} s, peak memory {second['peak_rss_mib']:,.0f} MiB "
        f"| **{second['seconds']:.1f} s** | — |",
        "",
        "Python's bytecode cache starts empty, as on a newcomer's machine: the first start compiles "
        "every module it imports, the second reuses them.",
        f"Seed steps (wall / CPU seconds, as printed by `enclave demo`): {result['steps']}.",
        f"Load average (1, 5, 15 min) at the start: {before}; at the end: {after}.",
    ]
