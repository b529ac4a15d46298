"""Ingestion: an identified upload in, a pseudonymised, consent-filtered, encrypted version out.

Steps, all in the caller's transaction (nothing is visible until it commits):

1. **Read** CSV (UTF-8, with or without BOM, ``,`` or ``;``) or Parquet with Polars, every value as
   text first so that validation, not the parser, decides what is wrong.
2. **Validate** against the dataset's declared schema: the subject-id and school columns and every
   variable must be there; a column the schema does not know is refused (it could be an identifier
   nobody declared); each row's values must fit their variable (categories, bounds, whole numbers,
   booleans, dates); a subject may appear once. Every problem is reported with its row number (the
   header is row 1, as in a spreadsheet) and column; if there is any, nothing is stored.
3. **Find the students** on the roster by the keyed hash of ``country/school/reference`` (the
   country is the steward's). A reference the roster does not know is a bad row.
4. **Keep only consenting subjects**: the effective status for the dataset's purpose at ingestion
   time must be ``granted``; the number left out is reported to the steward (and the ledger).
5. **Pseudonymise**: the subject becomes the HMAC pseudonym of the dataset's domain
   (``consent.decisions.pseudonyms``); the reference, the school and the declared identifiers are
   dropped.
6. **Write Parquet, encrypt and publish** one object per version through ``EncryptedStore`` (fresh
   data key, bound to dataset, version and object name), then record the version and a ledger entry.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, Role, register_action
from access.audit.service import record
from access.principal import Principal
from consent.decisions import pseudonyms
from consent.decisions.models import Status
from consent.decisions.status import student_statuses
from consent.identity import IdentityField, IdentityProtector
from consent.rosters.models import Student
from enclave.datasets.exceptions import DatasetNotFound, InvalidDataset
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.datasets.schemas import DatasetSchema, Variable, VariableType
from enclave.objects.store import EncryptedStore, ObjectContext
from infra.db import in_values
from infra.errors import Forbidden, PayloadTooLarge, ValidationFailed
from infra.logging import get_logger

log = get_logger(__name__)

MAX_UPLOAD = 512 * 1024 * 1024
"""Larger files go through the command line (streamed), not an HTTP request body."""
MAX_REPORTED = 1000
PSEUDONYM = "pseudonym"
TRUE = {"true", "1", "yes"}
FALSE = {"false", "0", "no"}


class IngestedDetails(Details):
    """Ledger details of a published version: counts and hashes, never a subject."""

    dataset: Identifier
    version: int
    rows: int
    excluded_without_consent: int
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

    def __init__(self, errors: Sequence[RowError]) -> None:
        shown = [{"row": e.row, "column": e.column, "reason": e.reason} for e in errors[:MAX_REPORTED]]
        super().__init__(
            f"{len(errors)} problem(s) in the upload (first: row {errors[0].row}, {errors[0].column}); "
            "nothing was stored",
            extra={"reason": "upload_rejected", "errors": shown, "error_count": len(errors)},
        )
        self.errors = list(errors)


@dataclass
class IngestReport:
    """What an ingestion did."""

    dataset_id: str
    version: int
    rows_in: int
    rows_stored: int
    excluded_without_consent: int
    objects: list[str] = field(default_factory=list)


def read_upload(data: bytes, fmt: str) -> pl.DataFrame:
    """The upload as a frame of text columns (CSV) or as stored (Parquet), or a clear 422."""
    if len(data) > MAX_UPLOAD:
        raise PayloadTooLarge(f"the file is larger than {MAX_UPLOAD // 2**20} MiB: use the command line")
    try:
        if fmt == "parquet":
            return pl.read_parquet(io.BytesIO(data))
        text = data.decode("utf-8-sig")
        header = text.split("\n", 1)[0]
        separator = ";" if header.count(";") > header.count(",") else ","
        return pl.read_csv(io.StringIO(text), separator=separator, infer_schema=False)
    except UnicodeDecodeError:
        raise InvalidDataset("file", "is not UTF-8: save it as CSV UTF-8", code="not_utf8") from None
    except (pl.exceptions.PolarsError, OSError) as error:
        raise InvalidDataset(
            "file", f"cannot be read as {fmt}: {str(error)[:200]}", code="unreadable"
        ) from None


def _check_variable(frame: pl.DataFrame, variable: Variable) -> pl.Series:
    """A text reason per row (null where the value is fine)."""
    values = frame[variable.name].cast(pl.String).str.strip_chars()
    missing = values.is_null() | (values == "")
    kind = variable.type
    if kind is VariableType.categorical:
        bad = ~values.is_in(variable.categories or [])
        reason = pl.Series(["not one of the declared categories"] * frame.height)
    elif kind in (VariableType.numeric, VariableType.integer):
        numbers = values.cast(pl.Float64, strict=False)
        not_number = numbers.is_null()
        out_of_bounds = (numbers < variable.min) | (numbers > variable.max)
        fraction = (
            (numbers != numbers.round(0))
            if kind is VariableType.integer
            else pl.Series([False] * frame.height)
        )
        bad = not_number | out_of_bounds.fill_null(False) | fraction.fill_null(False)
        reason = pl.select(
            pl.when(not_number)
            .then(pl.lit("not a number"))
            .when(out_of_bounds.fill_null(False))
            .then(pl.lit(f"outside [{variable.min:g}, {variable.max:g}]"))
            .otherwise(pl.lit("not a whole number"))
        ).to_series()
    elif kind is VariableType.boolean:
        bad = ~values.str.to_lowercase().is_in(sorted(TRUE | FALSE))
        reason = pl.Series(["not true/false"] * frame.height)
    else:
        dates = values.str.to_date("%Y-%m-%d", strict=False)
        outside = (dates < variable.min_date) | (dates > variable.max_date)
        bad = dates.is_null() | outside.fill_null(False)
        reason = pl.select(
            pl.when(dates.is_null())
            .then(pl.lit("not a date (YYYY-MM-DD)"))
            .otherwise(pl.lit("outside the declared dates"))
        ).to_series()
    reasons = pl.select(
        pl.when(missing).then(pl.lit("missing value")).when(bad.fill_null(True)).then(reason).otherwise(None)
    ).to_series()
    return reasons


def validate(frame: pl.DataFrame, schema: DatasetSchema) -> list[RowError]:
    """Every problem of the upload against the schema (empty when it is fine)."""
    columns = set(frame.columns)
    declared = {schema.subject_id_column, schema.school_column, *schema.drop_columns}
    declared |= {v.name for v in schema.variables}
    errors = [RowError(1, c, "missing column") for c in sorted(declared - set(schema.drop_columns) - columns)]
    errors += [RowError(1, c, "column not declared in the schema") for c in sorted(columns - declared)]
    if errors:
        return errors
    if frame.height == 0:
        return [RowError(2, schema.subject_id_column, "no rows")]
    refs = frame[schema.subject_id_column].cast(pl.String).str.strip_chars()
    key = pl.select(
        pl.concat_str([frame[schema.school_column].cast(pl.String), refs], separator="/")
    ).to_series()
    first_seen = key.is_first_distinct()
    for index in range(frame.height):
        if refs[index] is None or refs[index] == "":
            errors.append(RowError(index + 2, schema.subject_id_column, "missing subject id"))
        elif not first_seen[index]:
            errors.append(RowError(index + 2, schema.subject_id_column, "the same subject appears twice"))
    for variable in schema.variables:
        reasons = _check_variable(frame, variable)
        for index in reasons.is_not_null().arg_true():
            errors.append(RowError(int(index) + 2, variable.name, str(reasons[int(index)])))
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
) -> IngestReport:
    """Validate, pseudonymise, filter by consent, encrypt and publish a new version (steward only)."""
    if not principal.has(Role.data_steward) or principal.country is None:
        raise Forbidden(
            "only a data steward of a country uploads research data", extra={"reason": "not_a_steward"}
        )
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.destroyed_at is not None:
        raise DatasetNotFound(dataset_id)
    schema = DatasetSchema.model_validate(dataset.schema)
    frame = read_upload(data, fmt)
    errors = validate(frame, schema)
    if errors:
        raise UploadRejected(errors)
    country = principal.country
    schools = frame[schema.school_column].cast(pl.String).str.strip_chars().to_list()
    refs = frame[schema.subject_id_column].cast(pl.String).str.strip_chars().to_list()
    indexes = [
        protector.blind_index(session, IdentityField.student_ref, f"{country}/{school}/{ref}")
        for school, ref in zip(schools, refs, strict=True)
    ]
    found: dict[str, tuple[str, str]] = {}
    for start in range(0, len(indexes), 30_000):
        part = indexes[start : start + 30_000]
        for index, subject, school in session.execute(
            select(Student.ref_index, Student.subject_id, Student.school_code).where(
                in_values(session, Student.ref_index, part), Student.erased_at.is_(None)
            )
        ).all():
            found[index] = (subject, school)
    unknown = [
        RowError(
            row + 2, schema.subject_id_column, "not on the roster of this school (or outside your schools)"
        )
        for row, index in enumerate(indexes)
        if index not in found or (principal.schools and found[index][1] not in principal.schools)
    ]
    if unknown:
        raise UploadRejected(unknown)
    moment = now or datetime.now(UTC)
    subjects = [found[index][0] for index in indexes]
    statuses = student_statuses(session, subjects, at=moment, purposes=[dataset.purpose])
    keep = [statuses.rows[s][dataset.purpose] is Status.granted for s in subjects]
    kept_subjects = [s for s, k in zip(subjects, keep, strict=True) if k]
    mapping = pseudonyms.pseudonymise(session, store.keys, dataset.domain, kept_subjects)
    output = pl.DataFrame(
        [pl.Series(PSEUDONYM, [mapping[s] for s in kept_subjects], dtype=pl.String)]
        + [column.filter(pl.Series(keep)) for column in _typed(frame, schema)]
    )
    version_number = (
        session.execute(
            select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id)
        ).scalar_one()
        or 0
    ) + 1
    buffer = io.BytesIO()
    output.write_parquet(buffer, compression="zstd")
    name = "part-0000.parquet"
    store.put_object(session, ObjectContext(dataset.id, version_number, name), [buffer.getvalue()])
    source_sha256 = hashlib.sha256(data).hexdigest()
    session.add(
        DatasetVersion(
            dataset_id=dataset.id,
            version=version_number,
            state=VersionState.published.value,
            schema=dataset.schema,
            source_sha256=source_sha256,
            rows=output.height,
            excluded_without_consent=frame.height - output.height,
            objects=[name],
            created_by=principal.account_id,
            published_at=moment,
        )
    )
    session.flush()
    record(
        session,
        principal.actor,
        INGESTED,
        target_type="dataset",
        target_id=dataset.id,
        details=IngestedDetails(
            dataset=dataset.id,
            version=version_number,
            rows=output.height,
            excluded_without_consent=frame.height - output.height,
            source_sha256=source_sha256,
        ),
    )
    log.info("enclave.dataset_ingested", dataset=dataset.id, version=version_number, rows=output.height)
    return IngestReport(
        dataset_id=dataset.id,
        version=version_number,
        rows_in=frame.height,
        rows_stored=output.height,
        excluded_without_consent=frame.height - output.height,
        objects=[name],
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
