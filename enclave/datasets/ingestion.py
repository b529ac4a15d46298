"""Ingestion: an identified upload in, a pseudonymised, consent-filtered, encrypted version out.

The upload is streamed in batches (``enclave.datasets.ingest_source``), so a file of any size is
processed with bounded memory; each batch goes through these steps, all in one savepoint of the
caller's transaction (nothing is visible until it commits, and a failure leaves nothing behind):

1. **Read** CSV (UTF-8, with or without BOM, ``,`` or ``;``) or Parquet with Polars, every value as
   text first so that validation, not the parser, decides what is wrong.
2. **Validate** against the dataset's declared schema: the subject-id and school columns and every
   variable must be there; a column the schema does not know is refused (it could be an identifier
   nobody declared); each row's values must fit their variable (categories, bounds, whole numbers,
   booleans, dates); a subject may appear once in the whole file (checked across batches). Every
   problem is reported with its row number (the header is row 1, as in a spreadsheet) and column.
   By default any problem refuses the whole upload; with ``quarantine`` the bad rows are set aside
   in an encrypted report (``quarantine.csv`` of the version, its own data key) that only a data
   steward reads, and the good rows are stored.
3. **Find the students** on the roster by the keyed hash of ``country/school/reference`` (the
   country is the steward's). A reference the roster does not know is a bad row.
4. **Keep only consenting subjects**: the effective status for the dataset's purpose at ingestion
   time must be ``granted``; the number left out is reported to the steward (and the ledger).
5. **Pseudonymise**: the subject becomes the HMAC pseudonym of the dataset's domain
   (``consent.decisions.pseudonyms``); the reference, the school and the declared identifiers are
   dropped.
6. **Write Parquet and encrypt** one object per batch (``part-0000.parquet``, ``part-0001.parquet``,
   ...) through ``EncryptedStore`` (fresh data key each, bound to dataset, version and object name).

Steps 1-2 of the next batch (and its keyed hashes) run while a worker thread does steps 3-6 of the
current one, which is mostly PostgreSQL's work in its own process: on two cores a large file takes
little more than the longer of the two. Each step works on whole batches: one hash key read, one
statement per look-up, Polars and NumPy for the rows.

Then the version row (the manifest: its objects, counts and state ``published``) and a ledger entry
are written. Ingestions of one dataset are serialised by a lock on the dataset's row. If anything
fails, the savepoint is rolled back (so the data keys of the parts written are gone: the parts can
never be decrypted) and the parts are deleted from the object store where it can still be reached.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, Role, register_action
from access.audit.service import record
from access.principal import Principal
from consent.decisions import matching, pseudonyms
from consent.identity import IdentityField, IdentityProtector
from enclave.datasets import ingest_source
from enclave.datasets.exceptions import DatasetConflict, DatasetNotFound, InvalidDataset
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.datasets.schemas import DatasetSchema, Variable, VariableType
from enclave.objects.store import EncryptedStore, ObjectContext
from infra.db import is_postgresql
from infra.errors import Forbidden, PayloadTooLarge, ValidationFailed
from infra.logging import get_logger

log = get_logger(__name__)

MAX_UPLOAD = 512 * 1024 * 1024
"""Larger files go through the command line (streamed), not an HTTP request body."""
MAX_REPORTED = 1000
"""Problems listed in a refusal (all are counted)."""
WHOLE_ROSTER_SHARE = 0.1
"""An upload expected to hold at least this share of the country's roster matches it whole, once."""
MAX_QUARANTINED = 100_000
"""Beyond this many problems the upload is refused even with quarantine: the file needs fixing."""
QUARANTINE = "quarantine.csv"
"""The object name of a version's quarantine report."""
DUPLICATE = "the same subject appears twice"
PSEUDONYM = "pseudonym"
TRUE = {"true", "1", "yes"}
FALSE = {"false", "0", "no"}


class IngestedDetails(Details):
    """Ledger details of a published version: counts and hashes, never a subject."""

    dataset: Identifier
    version: int
    rows: int
    excluded_without_consent: int
    quarantined: int = 0
    parts: int = 1
    source_sha256: str


INGESTED = register_action("enclave.dataset_ingested", IngestedDetails)


@dataclass(frozen=True)
class RowError:
    """One problem in the upload."""

    row: int
    column: str
    reason: str


class UploadRejected(ValidationFailed):
    """The upload has problems; every one is listed and nothing was stored."""

    def __init__(self, errors: Sequence[RowError], *, total: int | None = None, message: str = "") -> None:
        shown = [{"row": e.row, "column": e.column, "reason": e.reason} for e in errors[:MAX_REPORTED]]
        count = total if total is not None else len(errors)
        super().__init__(
            (f"{message}: " if message else "")
            + f"{count} problem(s) in the upload (first: row {errors[0].row}, {errors[0].column}); "
            "nothing was stored",
            extra={"reason": "upload_rejected", "errors": shown, "error_count": count},
        )
        self.errors = list(errors)
        self.error_count = count


@dataclass
class IngestReport:
    """What an ingestion did."""

    dataset_id: str
    version: int
    rows_in: int
    rows_stored: int
    excluded_without_consent: int
    quarantined: int = 0
    objects: list[str] = field(default_factory=list)


def _reason(variable: Variable) -> pl.Expr:
    """A text reason per row (null where the value is fine), as one Polars expression."""
    values = pl.col(variable.name).cast(pl.String).str.strip_chars()
    missing = values.is_null() | (values == "")
    kind = variable.type
    problem: Any
    if kind is VariableType.categorical:
        problem = pl.when(~values.is_in(variable.categories or [])).then(
            pl.lit("not one of the declared categories")
        )
    elif kind in (VariableType.numeric, VariableType.integer):
        numbers = values.cast(pl.Float64, strict=False)
        problem = (
            pl.when(numbers.is_null() | numbers.is_nan())
            .then(pl.lit("not a number"))
            .when((numbers < variable.min) | (numbers > variable.max))
            .then(pl.lit(f"outside [{variable.min:g}, {variable.max:g}]"))
        )
        if kind is VariableType.integer:
            problem = problem.when(numbers != numbers.round(0)).then(pl.lit("not a whole number"))
    elif kind is VariableType.boolean:
        problem = pl.when(~values.str.to_lowercase().is_in(sorted(TRUE | FALSE))).then(
            pl.lit("not true/false")
        )
    else:
        dates = values.str.to_date("%Y-%m-%d", strict=False)
        problem = (
            pl.when(dates.is_null())
            .then(pl.lit("not a date (YYYY-MM-DD)"))
            .when((dates < variable.min_date) | (dates > variable.max_date))
            .then(pl.lit("outside the declared dates"))
        )
    return pl.when(missing).then(pl.lit("missing value")).otherwise(problem).alias(variable.name)


def check_columns(columns: Sequence[str], schema: DatasetSchema) -> list[RowError]:
    """Problems of the header: missing declared columns and columns the schema does not know."""
    present = set(columns)
    declared = {schema.subject_id_column, schema.school_column, *schema.drop_columns}
    declared |= {v.name for v in schema.variables}
    errors = [RowError(1, c, "missing column") for c in sorted(declared - set(schema.drop_columns) - present)]
    errors += [RowError(1, c, "column not declared in the schema") for c in sorted(present - declared)]
    return errors


def check_rows(frame: pl.DataFrame, schema: DatasetSchema, offset: int = 0) -> list[RowError]:
    """Problems of the values of a batch (rows numbered from ``offset``), duplicates aside."""
    errors: list[RowError] = []
    refs = frame[schema.subject_id_column].cast(pl.String).str.strip_chars()
    missing = (refs.is_null() | (refs == "")).arg_true()
    errors += [RowError(offset + int(i) + 2, schema.subject_id_column, "missing subject id") for i in missing]
    reasons = frame.select([_reason(v) for v in schema.variables])
    for name in reasons.columns:
        column = reasons[name]
        for index in column.is_not_null().arg_true().to_list():
            errors.append(RowError(offset + index + 2, name, str(column[index])))
    return errors


def validate(frame: pl.DataFrame, schema: DatasetSchema) -> list[RowError]:
    """Every problem of a whole upload in memory against the schema (empty when it is fine)."""
    errors = check_columns(frame.columns, schema)
    if errors:
        return errors
    if frame.height == 0:
        return [RowError(2, schema.subject_id_column, "no rows")]
    errors = check_rows(frame, schema)
    key = pl.select(
        pl.concat_str(
            [
                frame[c].cast(pl.String).str.strip_chars()
                for c in (schema.school_column, schema.subject_id_column)
            ],
            separator="/",
        )
    ).to_series()
    errors += [
        RowError(int(i) + 2, schema.subject_id_column, DUPLICATE)
        for i in (~key.is_first_distinct()).arg_true()
    ]
    return sorted(errors, key=lambda e: (e.row, e.column))


def _typed(frame: pl.DataFrame, schema: DatasetSchema) -> list[pl.Series]:
    columns = []
    for variable in schema.variables:
        values = frame[variable.name].cast(pl.String).str.strip_chars()
        if variable.type is VariableType.numeric:
            columns.append(values.cast(pl.Float64).alias(variable.name))
        elif variable.type is VariableType.integer:
            columns.append(values.cast(pl.Float64).cast(pl.Int64).alias(variable.name))
        elif variable.type is VariableType.boolean:
            columns.append(values.str.to_lowercase().is_in(sorted(TRUE)).alias(variable.name))
        elif variable.type is VariableType.date:
            columns.append(values.str.to_date("%Y-%m-%d").alias(variable.name))
        else:
            columns.append(values.cast(pl.Enum(variable.categories or [])).alias(variable.name))
    return columns


def _output_schema(schema: DatasetSchema) -> dict[str, pl.DataType]:
    types: dict[str, pl.DataType] = {PSEUDONYM: pl.String()}
    for variable in schema.variables:
        kind = variable.type
        types[variable.name] = (
            pl.Float64()
            if kind is VariableType.numeric
            else pl.Int64()
            if kind is VariableType.integer
            else pl.Boolean()
            if kind is VariableType.boolean
            else pl.Date()
            if kind is VariableType.date
            else pl.Enum(variable.categories or [])
        )
    return types


@dataclass
class Progress:
    """How far an ingestion is (for a progress bar)."""

    bytes_read: int = 0
    rows_read: int = 0
    rows_stored: int = 0
    parts: int = 0


class _SeenSubjects:
    """The subjects met so far, as 64-bit prefixes of their keyed hashes, with their row numbers.

    About 16 bytes per row (32 MB for 2,000,000 rows); the prefix of an HMAC-SHA-256 is uniform,
    so two different subjects share one with a probability of about 1e-7 in a file of 2,000,000.
    """

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.uint64)
        self.rows = np.empty(0, dtype=np.int64)

    def first_rows(self, indexes: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """The row where each subject was first met (-1 if new); then remembers the new ones."""
        prefixes = bytes.fromhex("".join([index[:16] for index in indexes]))
        keys = np.frombuffer(prefixes, dtype=">u8").astype(np.uint64)
        found = np.full(len(keys), -1, dtype=np.int64)
        if self.keys.size:
            position = np.clip(np.searchsorted(self.keys, keys), 0, self.keys.size - 1)
            hit = self.keys[position] == keys
            found[hit] = self.rows[position[hit]]
        # Within the batch: the first occurrence is new, later ones point to it.
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        repeat = np.zeros(len(keys), dtype=bool)
        repeat[1:] = ordered[1:] == ordered[:-1]
        starts = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(keys))))
        first_in_batch = np.empty(len(keys), dtype=np.int64)
        first_in_batch[order] = rows[order[starts]]
        inner = np.zeros(len(keys), dtype=bool)
        inner[order] = repeat
        found = np.where((found < 0) & inner, first_in_batch, found)
        fresh = found < 0
        self.keys = np.concatenate([self.keys, keys[fresh]])
        self.rows = np.concatenate([self.rows, rows[fresh]])
        sort = np.argsort(self.keys, kind="stable")
        self.keys, self.rows = self.keys[sort], self.rows[sort]
        return found


class _Quarantine:
    """Bad rows with their problems and original values, as the CSV of the quarantine report."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.chunks: list[bytes] = []
        self.count = 0
        self.rows = 0

    def add(self, frame: pl.DataFrame, offset: int, errors: Sequence[RowError]) -> None:
        if not errors:
            return
        problems = pl.DataFrame(
            {
                "row": [e.row for e in errors],
                "column": [e.column for e in errors],
                "reason": [e.reason for e in errors],
            },
            schema={"row": pl.Int64, "column": pl.String, "reason": pl.String},
        )
        values = frame.with_columns(pl.all().cast(pl.String)).with_row_index("row", offset=offset + 2)
        values = values.with_columns(pl.col("row").cast(pl.Int64))
        joined = problems.join(values, on="row", how="left").sort("row", "column", maintain_order=True)
        self.chunks.append(joined.write_csv(include_header=not self.chunks).encode())
        self.count += len(errors)
        self.rows += len({e.row for e in errors})
        if self.count > MAX_QUARANTINED:
            raise UploadRejected(
                list(errors),
                total=self.count,
                message=f"more than {MAX_QUARANTINED:,} problems to quarantine",
            )


class _NewPseudonyms:
    """Stores the pseudonyms an ingestion creates, batch after batch.

    Inserting millions of rows into the pseudonym table (random keys in two unique indexes) is
    most of the database's work in a large first upload. On PostgreSQL with an engine they go in
    on two connections of their own, one committed transaction per batch, while the next batches
    are matched and written: the database then works on both cores. A pseudonym is a keyed hash of the
    subject id, the same whenever it is computed, so rows committed for an upload that then fails
    hold nothing that was not already derivable: no research data, and the next upload would
    create exactly these. Elsewhere (SQLite, or a session on a caller's connection) they are
    inserted in the ingestion's own transaction. ``finish`` waits for every batch (and raises
    what failed) before the version is published.
    """

    WAITING = 3
    """Batches at most waiting to be stored (bounds memory)."""

    def __init__(self, session: Session, domain: str) -> None:
        self.session = session
        self.domain = domain
        bind = session.get_bind()
        self.engine = bind if isinstance(bind, Engine) and is_postgresql(session) else None
        self.worker = (
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="pseudonyms") if self.engine else None
        )
        self.waiting: list[Future[None]] = []

    def add(self, fresh: dict[str, str]) -> None:
        if not fresh:
            return
        if self.worker is None:
            pseudonyms.store(self.session, self.domain, fresh)
            return
        self.waiting.append(self.worker.submit(self._commit, fresh))
        while len(self.waiting) > self.WAITING:
            self.waiting.pop(0).result()

    def _commit(self, fresh: dict[str, str]) -> None:
        with Session(bind=self.engine) as session:
            with _without_jit(session):
                pseudonyms.store(session, self.domain, fresh)
            session.commit()

    def finish(self) -> None:
        """Wait until every batch is stored; raise the first failure."""
        while self.waiting:
            self.waiting.pop(0).result()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Checked:
    """A batch checked on its own, waiting for its students to be found and its rows stored."""

    frame: pl.DataFrame
    offset: int
    consumed: int
    errors: list[RowError]
    present: np.ndarray
    """Positions of the rows that have a subject id."""
    indexes: list[str]
    """Blind index of each of those rows."""


@dataclass
class _Run:
    """The state of one ingestion across its batches."""

    session: Session
    principal: Principal
    store: EncryptedStore
    dataset: Dataset
    schema: DatasetSchema
    version: int
    quarantine: bool
    moment: datetime
    indexer: Callable[[Iterable[str]], list[str]]
    size: int | None = None
    """The upload's size in bytes when known (to tell how much of the roster it holds)."""
    lookup: str = "auto"
    """How students are matched: ``batch`` (probed per batch), ``country`` (whole roster once), ``auto``."""
    roster: pl.DataFrame | None = None
    """Every student of the country, matched once (``matching.match_students``) when that costs less."""
    roster_rows: int | None = None
    new_pseudonyms: _NewPseudonyms = field(init=False)
    progress: Progress = field(default_factory=Progress)
    seen: _SeenSubjects = field(default_factory=_SeenSubjects)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    excluded: int = 0
    quarantined: _Quarantine | None = None
    written: list[ObjectContext] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.new_pseudonyms = _NewPseudonyms(self.session, self.dataset.domain)

    def reject(self, errors: Sequence[RowError]) -> None:
        self.error_count += len(errors)
        room = MAX_REPORTED - len(self.errors)
        if room > 0:
            self.errors.extend(errors[:room])

    def check(self, frame: pl.DataFrame, offset: int, consumed: int) -> _Checked:
        """The problems a batch has in itself and its blind indexes (no database: runs ahead)."""
        schema = self.schema
        if offset == 0:
            if columns := check_columns(frame.columns, schema):
                raise UploadRejected(columns)
            self.quarantined = _Quarantine(frame.columns)
        errors = check_rows(frame, schema, offset)
        refs = frame[schema.subject_id_column].cast(pl.String).str.strip_chars().fill_null("")
        schools = frame[schema.school_column].cast(pl.String).str.strip_chars().fill_null("")
        present = np.flatnonzero((refs != "").to_numpy())
        identities = (
            pl.DataFrame({"school": schools, "ref": refs})[present]
            .select(pl.concat_str(pl.lit(f"{self.principal.country}/"), "school", pl.lit("/"), "ref"))
            .to_series()
        )
        indexes = self.indexer(identities.to_list())
        rows = present.astype(np.int64) + offset + 2
        first = self.seen.first_rows(indexes, rows)
        errors += [
            RowError(int(row), schema.subject_id_column, f"{DUPLICATE} (first in row {int(seen)})")
            for row, seen in zip(rows[first >= 0], first[first >= 0], strict=True)
        ]
        return _Checked(frame, offset, consumed, errors, present, indexes)

    def store_batch(self, checked: _Checked) -> None:
        """Find the batch's students, keep the consenting ones, pseudonymise and write the part."""
        frame, offset, errors, present = checked.frame, checked.offset, checked.errors, checked.present
        matched = self._match(checked.indexes, checked.consumed)
        allowed = self.principal.schools
        found = matched["subject_id"].is_not_null()
        if allowed:
            schools = pl.Series(sorted(allowed), dtype=pl.String).implode()
            found = (found & matched["school_code"].is_in(schools)).fill_null(False)
        errors += [
            RowError(
                int(position) + offset + 2,
                self.schema.subject_id_column,
                "not on the roster of this school (or outside your schools)",
            )
            for position in present[~found.to_numpy()]
        ]
        errors.sort(key=lambda e: (e.row, e.column))
        self.progress.rows_read += frame.height
        self.progress.bytes_read = checked.consumed
        if errors:
            if not self.quarantine:
                self.reject(errors)
            elif self.quarantined is not None:
                self.quarantined.add(frame, offset, errors)
        if self.error_count:
            return  # the upload is refused: validate the rest, store nothing more
        good = np.zeros(frame.height, dtype=bool)
        good[present] = True  # rows with a subject id, each matched to its student (or an error)
        if errors:
            good[np.array([e.row - offset - 2 for e in errors], dtype=np.int64)] = False
        matched_rows = matched.with_columns(pl.Series("row", present, dtype=pl.Int64)).filter(
            pl.Series(good[present])
        )
        consenting = matched_rows.filter(pl.col("granted"))
        self.excluded += matched_rows.height - consenting.height
        new = consenting.filter(pl.col("pseudonym").is_null())["subject_id"].to_list()
        fresh = pseudonyms.compute(self.store.keys, self.dataset.domain, new)
        self.new_pseudonyms.add(fresh)
        names = consenting["pseudonym"].fill_null(
            consenting["subject_id"].replace_strict(fresh, default=None, return_dtype=pl.String)
        )
        keep = consenting["row"].to_numpy()
        selected = frame[keep] if keep.size < frame.height else frame
        output = pl.DataFrame([names.alias(PSEUDONYM), *_typed(selected, self.schema)])
        if output.height:
            self.write(output)

    def _match(self, indexes: Sequence[str], consumed: int) -> pl.DataFrame:
        """The student of each blind index (``matching.SCHEMA``, nulls where none), in their order.

        Probed batch by batch, unless the upload holds at least ``WHOLE_ROSTER_SHARE`` of the
        country's roster: then every student of the country is matched once and the batches are
        joined to that in memory (about 200 bytes a student: 400 MB for a roster of 2,000,000).
        """
        if self.roster is None and self.lookup != "batch":
            if self.roster_rows is None:
                self.roster_rows = matching.roster_size(self.session, self.principal.country or "")
            asked = self.progress.rows_read + len(indexes)
            expected = asked * self.size // consumed if self.size and consumed else asked
            if self.lookup == "country" or expected >= self.roster_rows * WHOLE_ROSTER_SHARE:
                self.roster = self._students(None).sort("ref_index")
        if self.roster is None:
            return pl.DataFrame({"ref_index": indexes}, schema={"ref_index": pl.String}).join(
                self._students(indexes), on="ref_index", how="left", maintain_order="left"
            )
        # A binary search in the sorted roster: no hash table of millions rebuilt for each batch.
        keys = pl.Series(indexes, dtype=pl.String)
        if self.roster.height == 0:
            return self.roster.clear(len(indexes))
        found = self.roster[self.roster["ref_index"].search_sorted(keys).clip(0, self.roster.height - 1)]
        hit = found["ref_index"] == keys
        return found.select(pl.when(hit).then(pl.col(c)).alias(c) for c in found.columns)

    def _students(self, indexes: Sequence[str] | None) -> pl.DataFrame:
        return matching.match_students(
            self.session,
            country=self.principal.country or "",
            purpose=self.dataset.purpose,
            domain=self.dataset.domain,
            at=self.moment,
            ref_indexes=indexes,
        )

    def write(self, output: pl.DataFrame) -> None:
        buffer = io.BytesIO()
        output.write_parquet(buffer, compression="zstd")
        ctx = ObjectContext(self.dataset.id, self.version, f"part-{len(self.written):04d}.parquet")
        self.written.append(ctx)
        self.store.put_object(self.session, ctx, [buffer.getvalue()])
        self.progress.rows_stored += output.height
        self.progress.parts += 1


def ingest(
    session: Session,
    principal: Principal,
    store: EncryptedStore,
    protector: IdentityProtector,
    *,
    dataset_id: str,
    data: bytes,
    fmt: str = "csv",
    now: datetime | None = None,
    quarantine: bool = False,
) -> IngestReport:
    """Validate, pseudonymise, filter by consent, encrypt and publish a new version from bytes in memory."""
    if len(data) > MAX_UPLOAD:
        raise PayloadTooLarge(f"the file is larger than {MAX_UPLOAD // 2**20} MiB: use the command line")
    return ingest_stream(
        session,
        principal,
        store,
        protector,
        dataset_id=dataset_id,
        fmt=fmt,
        data=data,
        now=now,
        quarantine=quarantine,
    )


def ingest_stream(
    session: Session,
    principal: Principal,
    store: EncryptedStore,
    protector: IdentityProtector,
    *,
    dataset_id: str,
    fmt: str = "csv",
    path: Path | None = None,
    data: bytes | None = None,
    chunks: Callable[[], Iterable[bytes]] | None = None,
    source_sha256: str | None = None,
    quarantine: bool = False,
    version: int | None = None,
    now: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    batch_bytes: int = ingest_source.BATCH_BYTES,
    batch_rows: int = ingest_source.BATCH_ROWS,
    lookup: str = "auto",
) -> IngestReport:
    """Ingest an upload of any size batch by batch and publish it as one new version (steward only).

    The upload is a file (``path``), bytes (``data``) or a stream of chunks (``chunks``, a callable
    giving a fresh iterable). ``lookup`` chooses how rows are matched to students (``auto``: per
    batch, or the whole roster at once for an upload holding a good share of it; ``batch`` and
    ``country`` force one way). ``version`` is a version number reserved by an ingestion job (its row
    in state ``ingesting``); otherwise the next number is taken. Raises ``UploadRejected`` (422,
    every problem located) if the upload is refused, ``StorageUnavailable`` (503, retryable) if the
    object store fails; in both cases nothing is published and the caller's session is as before.
    """
    if not principal.has(Role.data_steward) or principal.country is None:
        raise Forbidden(
            "only a data steward of a country uploads research data", extra={"reason": "not_a_steward"}
        )
    if fmt not in ("csv", "parquet"):
        raise InvalidDataset("format", "must be csv or parquet", code="unknown_format")
    if lookup not in ("auto", "batch", "country"):
        raise ValueError(f"unknown lookup {lookup!r}")
    savepoint = session.begin_nested()
    run: _Run | None = None
    try:
        dataset = session.get(Dataset, dataset_id, with_for_update=True)
        if dataset is None or dataset.destroyed_at is not None:
            raise DatasetNotFound(dataset_id)
        schema = DatasetSchema.model_validate(dataset.schema)
        reserved = None
        if version is not None:
            reserved = session.execute(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id, DatasetVersion.version == version
                )
            ).scalar_one()
            if reserved.state == VersionState.published.value:
                raise DatasetConflict(
                    f"version {version} of {dataset.id} is already published", code="published"
                )
        number = (
            version
            or (
                session.execute(
                    select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id)
                ).scalar_one()
                or 0
            )
            + 1
        )
        run = _Run(
            session,
            principal,
            store,
            dataset,
            schema,
            number,
            quarantine,
            now or datetime.now(UTC),
            protector.blind_indexer(session, IdentityField.student_ref),
            size=path.stat().st_size if path is not None else len(data) if data is not None else None,
            lookup=lookup,
        )
        digest = hashlib.sha256()
        stream = _source(fmt, path, data, chunks, digest)
        with _without_jit(session):
            _run_batches(
                run,
                ingest_source.batches(
                    fmt,
                    path=path if fmt == "parquet" else None,
                    data=data,
                    chunks=stream,
                    batch_bytes=batch_bytes,
                    batch_rows=batch_rows,
                ),
                progress,
            )
        report = _publish(run, reserved, source_sha256 or digest.hexdigest())
        savepoint.commit()
    except BaseException:
        if savepoint.is_active:
            savepoint.rollback()
        if run is not None:
            _remove(store, run.written)
        raise
    if progress is not None:
        progress(run.progress)
    return report


def _run_batches(
    run: _Run, batches: Iterable[ingest_source.Batch], progress: Callable[[Progress], None] | None
) -> None:
    """Check each batch in this thread while the previous one is stored by a worker thread.

    Reading, parsing, validating and hashing the next batch (Polars, HMAC: no database) overlap
    with the database work of the current one, which runs in PostgreSQL's own process: on two
    cores a large file takes little more than the longer of the two. Only the worker uses the
    session while batches are read (the upload's chunks are opened before the first batch), and
    one batch at most waits, so memory stays bounded.
    """
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest") as worker:
            storing: Future[None] | None = None
            for batch in batches:
                checked = run.check(batch.frame, batch.offset, batch.consumed)
                if storing is not None:
                    storing.result()
                    if progress is not None:
                        progress(run.progress)
                storing = worker.submit(run.store_batch, checked)
            if storing is not None:
                storing.result()
        run.new_pseudonyms.finish()
        if progress is not None:
            progress(run.progress)
    finally:
        run.new_pseudonyms.close()


@contextmanager
def _without_jit(session: Session) -> Iterator[None]:
    """PostgreSQL's JIT compiler off while the batches are processed, then as it was.

    The look-ups of a batch of 100,000 rows cost enough for the planner to compile them, which
    takes longer than running them. Set in the ingestion's savepoint: rolled back with it.
    """
    if not is_postgresql(session):
        yield
        return
    previous = session.execute(text("SELECT current_setting('jit')")).scalar_one()
    session.execute(text("SELECT set_config('jit', 'off', true)"))
    yield
    session.execute(text("SELECT set_config('jit', :value, true)"), {"value": previous})


def _source(
    fmt: str,
    path: Path | None,
    data: bytes | None,
    chunks: Callable[[], Iterable[bytes]] | None,
    digest: Any,
) -> Callable[[], Iterable[bytes]] | None:
    """The chunks to read (hashed on the way), or None when the file or bytes are read directly."""
    if data is not None:
        digest.update(data)
        return None
    if path is not None and fmt == "parquet":
        for chunk in ingest_source.file_chunks(path):
            digest.update(chunk)
        return None
    return _hashed(chunks if chunks is not None else _file(path), digest)


def _file(path: Path | None) -> Callable[[], Iterable[bytes]]:
    if path is None:
        raise ValueError("no upload given")
    return lambda: ingest_source.file_chunks(path)


def _hashed(chunks: Callable[[], Iterable[bytes]], digest: Any) -> Callable[[], Iterable[bytes]]:
    def hashing() -> Iterator[bytes]:
        for chunk in chunks():
            digest.update(chunk)
            yield chunk

    return hashing


def _remove(store: EncryptedStore, written: Sequence[ObjectContext]) -> None:
    """Delete the parts of a failed ingestion (their data keys were rolled back: they never open)."""
    for ctx in written:
        try:
            store.storage.delete(ctx.storage_key)
        except Exception:  # the store may be what failed; the bytes stay unreadable without a key
            log.warning(
                "enclave.ingest_part_left", dataset=ctx.dataset_id, version=ctx.version, name=ctx.name
            )


def _publish(run: _Run, reserved: DatasetVersion | None, source_sha256: str) -> IngestReport:
    schema, dataset, session = run.schema, run.dataset, run.session
    rows_in = run.progress.rows_read
    if rows_in == 0:
        raise UploadRejected([RowError(2, schema.subject_id_column, "no rows")])
    if run.error_count:
        raise UploadRejected(run.errors, total=run.error_count)
    quarantined = run.quarantined.rows if run.quarantined else 0
    if quarantined == rows_in and run.quarantined is not None:
        raise UploadRejected(
            [RowError(2, schema.subject_id_column, "every row has a problem: nothing to store")],
            total=run.quarantined.count,
        )
    if not run.written:
        run.write(pl.DataFrame(schema=_output_schema(schema)))
    quarantine_name = None
    if run.quarantined is not None and run.quarantined.count:
        quarantine_name = QUARANTINE
        run.store.put_object(
            session, ObjectContext(dataset.id, run.version, quarantine_name), run.quarantined.chunks
        )
        run.written.append(ObjectContext(dataset.id, run.version, quarantine_name))
    names = [ctx.name for ctx in run.written if ctx.name != QUARANTINE]
    stored = run.progress.rows_stored
    row = reserved or DatasetVersion(
        dataset_id=dataset.id, version=run.version, created_by=run.principal.account_id
    )
    row.state = VersionState.published.value
    row.schema = dataset.schema
    row.source_sha256 = source_sha256
    row.rows = stored
    row.excluded_without_consent = run.excluded
    row.quarantined = quarantined if run.quarantine else None
    row.quarantine_object = quarantine_name
    row.objects = names
    row.published_at = run.moment
    if reserved is None:
        session.add(row)
    session.flush()
    record(
        session,
        run.principal.actor,
        INGESTED,
        target_type="dataset",
        target_id=dataset.id,
        details=IngestedDetails(
            dataset=dataset.id,
            version=run.version,
            rows=stored,
            excluded_without_consent=run.excluded,
            quarantined=quarantined,
            parts=len(names),
            source_sha256=source_sha256,
        ),
    )
    log.info(
        "enclave.dataset_ingested", dataset=dataset.id, version=run.version, rows=stored, parts=len(names)
    )
    return IngestReport(
        dataset_id=dataset.id,
        version=run.version,
        rows_in=rows_in,
        rows_stored=stored,
        excluded_without_consent=run.excluded,
        quarantined=quarantined,
        objects=names,
    )


def load_version(
    session: Session, store: EncryptedStore, dataset_id: str, version: int | None = None
) -> pl.DataFrame:
    """A published version decrypted into Polars (the latest when ``version`` is None)."""
    query = select(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset_id, DatasetVersion.state == VersionState.published.value
    )
    if version is not None:
        query = query.where(DatasetVersion.version == version)
    row = session.execute(query.order_by(DatasetVersion.version.desc()).limit(1)).scalar_one_or_none()
    if row is None:
        raise DatasetNotFound(dataset_id if version is None else f"{dataset_id} version {version}")
    frames = [
        pl.read_parquet(io.BytesIO(store.read_object(session, ObjectContext(dataset_id, row.version, name))))
        for name in row.objects
    ]
    return pl.concat(frames) if len(frames) > 1 else frames[0]
