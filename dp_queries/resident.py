"""Data kept inside OpenDP between releases, so a release does not copy the data again.

OpenDP's Python binding hands a Polars frame to its Rust core by serialising it, which costs far more
than the aggregate itself at two million rows (hundreds of milliseconds per float column). So the
columns a query reads are handed over once, to a fully adaptive composition odometer
(``make_fully_adaptive_composition``) that keeps them; each release then passes only its
measurement to that odometer's queryable. The odometer sets no limit of its own: the authoritative
budget is in the database and is checked before the engine runs.

A resident is keyed by the frame object, the columns and the rows per student, and dropped when its
frame is garbage-collected (a new version, an erasure or a withdrawal gives a new frame). A caller
that derives a new frame object for the same content each time (e.g. a consent filter that drops
the same students again) passes a ``frame_key`` naming that content instead (dataset, version and
the digest of the consenting students); such residents live until :data:`MAX_KEYED` newer keys
replace them or :func:`forget` is called. The least recently used residents are dropped beyond
:data:`MAX_BYTES`. Frames are treated as immutable.

The privacy unit is enforced here: a student contributes at most ``rows_per_subject`` rows; extra
rows of one pseudonym are dropped before the data reaches OpenDP. A frame without a ``pseudonym``
column counts each row as one student.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import polars as pl

from dp_queries import dp

MAX_BYTES = 1 << 30
"""Memory kept by resident copies (the data's estimated size), least recently used dropped first."""
MAX_KEYED = 8
"""Distinct ``frame_key`` contents kept (oldest dropped first)."""
SUBJECT = "pseudonym"


@dataclass
class _Resident:
    queryable: Any
    nbytes: int
    lock: threading.Lock


_LOCK = threading.Lock()
_RESIDENTS: OrderedDict[tuple[int | str, str, int], _Resident] = OrderedDict()
_MOST_ROWS: dict[int, int] = {}
"""Most rows of one student, per live frame (by id, dropped with the frame)."""
_WATCHED: set[int] = set()


def _forget_frame(frame_id: int) -> None:
    with _LOCK:
        _WATCHED.discard(frame_id)
        _MOST_ROWS.pop(frame_id, None)
        for key in [k for k in _RESIDENTS if k[0] == frame_id]:
            del _RESIDENTS[key]


def _watch(frame: pl.DataFrame) -> None:
    frame_id = id(frame)
    with _LOCK:
        if frame_id in _WATCHED:
            return
        _WATCHED.add(frame_id)
    weakref.finalize(frame, _forget_frame, frame_id)


def most_rows_per_subject(frame: pl.DataFrame) -> int:
    """The most rows one student has in ``frame`` (1 without a pseudonym column)."""
    if SUBJECT not in frame.columns or frame.height == 0:
        return 1
    _watch(frame)
    with _LOCK:
        known = _MOST_ROWS.get(id(frame))
    if known is not None:
        return known
    hashes = frame[SUBJECT].hash()
    if hashes.n_unique() == frame.height:  # distinct hashes: distinct students (the usual case, fast)
        most = 1
    else:
        counts = frame[SUBJECT].value_counts()["count"].max()
        most = int(counts) if isinstance(counts, int) else 1
    with _LOCK:
        _MOST_ROWS[id(frame)] = most
    return most


def bounded(frame: pl.DataFrame, rows_per_subject: int) -> pl.DataFrame:
    """``frame`` with at most ``rows_per_subject`` rows per student (their first ones)."""
    if most_rows_per_subject(frame) <= rows_per_subject:
        return frame
    return frame.filter(pl.int_range(pl.len()).over(SUBJECT) < rows_per_subject)


def run(
    frame: pl.DataFrame,
    prepared: Any,
    *,
    columns_key: str,
    domain: Any,
    measurement: Any,
    rows_per_subject: int,
    frame_key: str | None = None,
) -> pl.DataFrame:
    """Release ``measurement`` on ``frame``'s data kept in OpenDP (handed over on first use).

    ``prepared(frame)`` gives the typed columns of the domain; ``frame_key``, if given, names the
    frame's content (two frames with the same key must hold the same rows).
    """
    key: tuple[int | str, str, int]
    if frame_key is None:
        key = (id(frame), columns_key, rows_per_subject)
        _watch(frame)
    else:
        key = ("key:" + frame_key, columns_key, rows_per_subject)
    with _LOCK:
        resident = _RESIDENTS.get(key)
        if resident is not None:
            _RESIDENTS.move_to_end(key)
    if resident is None:
        data: pl.DataFrame = prepared(bounded(frame, rows_per_subject))
        odometer = dp.c.make_fully_adaptive_composition(domain, dp.symmetric_distance(), dp.max_divergence())
        resident = _Resident(odometer(data.lazy()), int(data.estimated_size()), threading.Lock())
        with _LOCK:
            _RESIDENTS[key] = resident
            keyed = list(dict.fromkeys(k[0] for k in _RESIDENTS if isinstance(k[0], str)))
            for old in keyed[: max(0, len(keyed) - MAX_KEYED)]:
                for stale in [k for k in _RESIDENTS if k[0] == old]:
                    del _RESIDENTS[stale]
            total = sum(r.nbytes for r in _RESIDENTS.values())
            while total > MAX_BYTES and len(_RESIDENTS) > 1:
                _, dropped = _RESIDENTS.popitem(last=False)
                total -= dropped.nbytes
    with resident.lock:
        answer = resident.queryable(measurement)
    result: pl.DataFrame = answer.collect()
    return result


def forget() -> None:
    """Drop every resident copy (tests, or after a key rotation)."""
    with _LOCK:
        _RESIDENTS.clear()
