"""Matching an upload's rows to students: roster entry, consent status and pseudonym in one statement.

An ingestion finds each row's student by the keyed hash of ``country/school/reference`` (the
roster's ``ref_index``), keeps the row only if the student's effective status for the dataset's
purpose is ``granted`` at that instant, and replaces the student by their pseudonym in the
dataset's domain. Asked one by one, those are three look-ups per row into three tables of the
size of the roster; here they are one statement:

- for the keyed hashes of a batch (``ref_indexes``), probing the roster's index with them; or
- for every student of the country at once (``ref_indexes=None``), one pass over the tables, which
  costs less than probing once an upload holds more than a small fraction of the roster (a file
  of millions of rows against a roster of millions).

The status comes from the status cache where its row answers for the instant (the same test as
``status_cache.lookup``) and is derived from the decisions for the others. Erased students are
not matched. The answer is a Polars frame, one row per student found.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from consent.decisions.models import Status
from consent.decisions.status import STATUS_CODES, all_purposes, derive_student_statuses, probe_filter
from consent.decisions.status_cache import CACHED_CODES, ROWS, WITH_ROWS, cached_codes_statement
from infra.db import is_postgresql

_GRANTED = str(STATUS_CODES[Status.granted])
_MATCH = f"""
{WITH_ROWS}SELECT s.ref_index, s.subject_id, s.school_code, {CACHED_CODES} AS codes, p.pseudonym
{ROWS}LEFT JOIN consent_pseudonym p ON p.domain = :domain AND p.subject_id = s.subject_id
WHERE s.country_code = :country AND s.erased_at IS NULL{{indexes}}
"""
SCHEMA = {
    "ref_index": pl.String,
    "subject_id": pl.String,
    "school_code": pl.String,
    "granted": pl.Boolean,
    "pseudonym": pl.String,
}
"""The columns of a match: ``pseudonym`` is null for a student with none yet in the domain."""
_FETCHED = {
    "ref_index": pl.String,
    "subject_id": pl.String,
    "school_code": pl.String,
    "codes": pl.String,
    "pseudonym": pl.String,
}
_NAMED = re.compile(r"(?<![:\w]):(\w+)")
"""A ``:name`` parameter of the SQL, rewritten as psycopg's ``%(name)s`` for ``COPY``."""
PART_BYTES = 16 * 2**20
"""Bytes of ``COPY`` output parsed at a time."""


def roster_size(session: Session, country: str) -> int:
    """Students of the country on the roster (not erased): what matching the whole country reads."""
    return int(
        session.execute(
            text("SELECT count(*) FROM consent_student WHERE country_code = :c AND erased_at IS NULL"),
            {"c": country},
        ).scalar_one()
    )


def match_students(
    session: Session,
    *,
    country: str,
    purpose: str,
    domain: str,
    at: datetime,
    ref_indexes: Sequence[str] | None = None,
) -> pl.DataFrame:
    """The students of ``country`` with these keyed hashes (all of them when None), as ``SCHEMA``.

    ``granted`` is the student's effective status for ``purpose`` at ``at``; ``pseudonym`` their
    pseudonym in ``domain`` if they have one. Keyed hashes nobody has are simply absent.
    """
    every = all_purposes(session)
    position = every.index(purpose)
    params: dict[str, object] = {"country": country, "domain": domain, "t": at, "purposes": ",".join(every)}
    indexes = ""
    if ref_indexes is not None:
        if not ref_indexes:
            return pl.DataFrame(schema=SCHEMA)
        where, params["ids"] = probe_filter(session, "s.ref_index", ref_indexes)
        indexes = f" AND {where}"
    frame = _fetch(session, _MATCH.format(indexes=indexes), params)
    misses = frame.filter(pl.col("codes").is_null())["subject_id"].to_list()
    derived = (
        derive_student_statuses(session, misses, at=at, purposes=[purpose]).consenting(purpose)
        if misses
        else set()
    )
    granted = (
        pl.when(pl.col("codes").is_null())
        .then(pl.col("subject_id").is_in(pl.Series(list(derived), dtype=pl.String).implode()))
        .otherwise(pl.col("codes").str.slice(position, 1) == _GRANTED)
    )
    return frame.with_columns(granted.alias("granted")).select(list(SCHEMA))


def _fetch(session: Session, sql: str, params: dict[str, object]) -> pl.DataFrame:
    """The rows of the match as a frame of text columns (``_FETCHED``).

    On PostgreSQL through ``COPY (...) TO STDOUT`` in CSV, parsed by Polars 16 MiB at a time: a
    whole roster of millions fetched as Python tuples would take seconds and several times the
    memory of the frame. The server sends one COPY message per row, so whole messages always end
    on a row.
    """
    if not is_postgresql(session):
        rows = session.execute(cached_codes_statement(sql), params).all()
        return pl.DataFrame(rows, schema=_FETCHED, orient="row")
    copy_sql = "COPY (" + _NAMED.sub(r"%(\1)s", sql) + ") TO STDOUT (FORMAT csv)"
    parts: list[pl.DataFrame] = []
    pending: list[bytes] = []
    size = 0
    cursor = session.connection().connection.cursor()
    with closing(cursor), cursor.copy(copy_sql, params) as copy:
        for data in copy:
            pending.append(bytes(data))
            size += len(data)
            if size >= PART_BYTES:
                parts.append(_parse(b"".join(pending)))
                pending, size = [], 0
    if pending:
        parts.append(_parse(b"".join(pending)))
    return pl.concat(parts) if parts else pl.DataFrame(schema=_FETCHED)


def _parse(body: bytes) -> pl.DataFrame:
    # An empty unquoted field is COPY's NULL (codes and pseudonyms are never empty strings).
    return pl.read_csv(
        body, has_header=False, new_columns=list(_FETCHED), schema=_FETCHED, infer_schema=False
    )
