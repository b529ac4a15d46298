"""The record of processing activities (GDPR Art. 30(1)), built from the database and the settings.

What the software knows is read where it lives: the consent purposes, the declared datasets with
their variables and Art. 9 flags, the research projects granted access (title, purpose, grounds,
scope, end date; never the researchers), the retention dates and periods, the security settings.
What it cannot know (the controller, the DPO, processors, transfers, some retention periods) comes
from a TOML file: ``enclave/data/processing_record.toml`` by default, whose values starting with
``TO BE COMPLETED`` are reported as placeholders until a deployment fills them in.

The record also lists, as points to check, special-category variables that are held or granted
without an Art. 9 ground the software can see (the catalog does not tie Art. 9 flags to the
``special_category`` consent purpose, nor project grants to an Art. 9(2) condition).
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.projects.models import EPSILON_PLACES, SPECIAL_CATEGORY_PURPOSE, ProjectStatus, ResearchProject
from consent.forms.models import Purpose
from consent.invitations.sending import LETTERS_KEPT
from consent.invitations.service import VALID_FOR
from consent.requests.deadlines import MAX_EXTENSION_MONTHS, RESPONSE_MONTHS
from consent.rosters.csv_format import neutralise_cell
from enclave.datasets.models import Dataset
from enclave.datasets.schemas import DatasetSchema
from infra.settings import KeyBackendKind, Settings, StorageBackend

DEFAULT_DETAILS = Path(__file__).parent / "data" / "processing_record.toml"
PLACEHOLDER = "TO BE COMPLETED"
RECIPIENT_STATUSES = (ProjectStatus.approved, ProjectStatus.active, ProjectStatus.suspended)
"""Projects that hold a grant: approved (waiting for their start date), active, or suspended."""


class RecordFormat(StrEnum):
    """Output formats of the record."""

    markdown = "markdown"
    json = "json"
    csv = "csv"


class DetailsError(ValueError):
    """The details file cannot be read or does not have the expected shape."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Controller(_Model):
    """Art. 30(1)(a): the controller, joint controllers and the representative."""

    name: str
    address: str
    email: str
    phone: str
    joint_controllers: str
    representative: str


class Contact(_Model):
    """Art. 30(1)(a): the data protection officer."""

    name: str
    email: str
    phone: str


class LawfulBasis(_Model):
    """Grounds of the consent purposes: the default and the one for special-category data."""

    default: str
    special_category: str


class SubjectCategory(_Model):
    """Art. 30(1)(c): a category of data subjects and the personal data held about them."""

    category: str
    description: str
    personal_data: list[str]


class OtherRecipient(_Model):
    """Art. 30(1)(d): a recipient that is not a research project (a processor, say)."""

    name: str
    role: str
    receives: str


class Transfer(_Model):
    """Art. 30(1)(e): a transfer to a third country or an international organisation."""

    destination: str
    recipient: str
    safeguards: str


class RetentionRule(_Model):
    """Art. 30(1)(f): how long something is kept."""

    what: str
    period: str


class Details(_Model):
    """The content of the details file."""

    controller: Controller
    dpo: Contact
    lawful_basis: LawfulBasis
    data_subjects: list[SubjectCategory]
    recipients: list[OtherRecipient] = Field(default_factory=list)
    transfers: list[Transfer] = Field(default_factory=list)
    retention: list[RetentionRule] = Field(default_factory=list)


class PurposeEntry(_Model):
    """Art. 30(1)(b): one consent purpose and its grounds."""

    code: str
    description: str
    special_category: bool
    lawful_basis: str


class VariableEntry(_Model):
    """A kept variable of a declared dataset."""

    name: str
    type: str
    description: str
    special_category: bool


class DatasetEntry(_Model):
    """A declared dataset: the personal data it holds under pseudonyms and until when."""

    id: str
    title: str
    purpose: str
    pseudonymisation_domain: str
    retention_until: date
    variables: list[VariableEntry]
    special_category_variables: list[str]
    dropped_identifiers: list[str]


class ProjectRecipient(_Model):
    """Art. 30(1)(d): a research project granted access to differentially private aggregates."""

    project_id: str
    title: str
    status: str
    purpose: str
    lawful_basis: str
    special_category_condition: str | None
    granted_epsilon: str | None
    datasets: list[str]
    variables: list[str]
    start_date: date
    end_date: date | None
    ethics_reference: str
    receives: str = "differentially private aggregate statistics only; never rows or exact counts"


class SecurityMeasure(_Model):
    """Art. 30(1)(g) and Art. 32: a technical or organisational measure and where it lives."""

    measure: str
    how: str
    where: str


class RecordOfProcessing(_Model):
    """The whole record, in the order of Art. 30(1)."""

    generated_at: datetime
    environment: str
    controller: Controller
    dpo: Contact
    purposes: list[PurposeEntry]
    data_subjects: list[SubjectCategory]
    datasets: list[DatasetEntry]
    recipients: list[ProjectRecipient]
    other_recipients: list[OtherRecipient]
    transfers: list[Transfer]
    transfers_statement: str
    retention: list[RetentionRule]
    security_measures: list[SecurityMeasure]
    placeholders: list[str] = Field(
        description="Fields still holding a 'TO BE COMPLETED' value: the record is not complete."
    )
    points_to_check: list[str] = Field(
        description="Art. 9 findings for the DPO: special-category variables held or granted without "
        "the special_category consent purpose or an Art. 9(2) condition."
    )


def load_details(path: Path | None = None) -> Details:
    """Read the details file (the shipped one by default); raise DetailsError saying what is wrong."""
    source = path or DEFAULT_DETAILS
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DetailsError(f"{source}: {exc}") from None
    try:
        return Details.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise DetailsError(f"{source}: {problems}") from None


def _purposes(session: Session, details: Details) -> list[PurposeEntry]:
    rows = session.scalars(select(Purpose).order_by(Purpose.position))
    return [
        PurposeEntry(
            code=row.code,
            description=row.description,
            special_category=row.special_category,
            lawful_basis=details.lawful_basis.special_category
            if row.special_category
            else details.lawful_basis.default,
        )
        for row in rows
    ]


def _datasets(session: Session) -> list[DatasetEntry]:
    rows = session.scalars(select(Dataset).where(Dataset.destroyed_at.is_(None)).order_by(Dataset.id))
    entries = []
    for row in rows:
        schema = DatasetSchema.model_validate(row.schema)
        variables = [
            VariableEntry(
                name=v.name, type=v.type.value, description=v.description, special_category=v.special_category
            )
            for v in schema.variables
        ]
        entries.append(
            DatasetEntry(
                id=row.id,
                title=row.title,
                purpose=row.purpose,
                pseudonymisation_domain=row.domain,
                retention_until=row.retention_until,
                variables=variables,
                special_category_variables=[v.name for v in variables if v.special_category],
                dropped_identifiers=[schema.subject_id_column, schema.school_column, *schema.drop_columns],
            )
        )
    return entries


def _epsilon(value: Decimal | None) -> str | None:
    """ε as stored (four places), without trailing zeros beyond the first decimal: 1.0, 0.25."""
    if value is None:
        return None
    text = f"{value.quantize(Decimal(1).scaleb(-EPSILON_PLACES)):f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _recipients(session: Session) -> list[ProjectRecipient]:
    rows = session.scalars(
        select(ResearchProject)
        .where(ResearchProject.status.in_([s.value for s in RECIPIENT_STATUSES]))
        .order_by(ResearchProject.approved_at, ResearchProject.id)
    )
    return [
        ProjectRecipient(
            project_id=row.id,
            title=row.title,
            status=row.status,
            purpose=row.purpose,
            lawful_basis=row.lawful_basis,
            special_category_condition=row.special_category_condition,
            granted_epsilon=_epsilon(row.granted_epsilon),
            datasets=list(row.allowed_datasets or []),
            variables=list(row.allowed_variables or []),
            start_date=row.start_date,
            end_date=row.granted_end_date,
            ethics_reference=row.ethics_reference,
        )
        for row in rows
    ]


def _retention(settings: Settings, details: Details, datasets: Sequence[DatasetEntry]) -> list[RetentionRule]:
    days = settings.audit_retention_days
    rules = [
        RetentionRule(
            what=f"dataset {d.id}",
            period=f"until {d.retention_until.isoformat()}; then every version is crypto-shredded "
            "by the daily retention job (the DPO is warned 30 days before)",
        )
        for d in datasets
    ]
    rules += [
        RetentionRule(
            what="audit ledger entries",
            period=f"{days} days (ENCLAVE_AUDIT_RETENTION_DAYS); then their content is emptied and "
            "only their hashes are kept under a signed checkpoint",
        ),
        RetentionRule(
            what="data-subject requests",
            period=f"answered within {RESPONSE_MONTHS} month of receipt, extendable once by up to "
            f"{MAX_EXTENSION_MONTHS} months with a recorded reason (Art. 12(3))",
        ),
        RetentionRule(
            what="withdrawn consent",
            period="effective for every later query at once; the subject's rows are removed from "
            "every stored dataset version and the old data keys crypto-shredded by the erasure job",
        ),
        RetentionRule(
            what="invitation links and codes",
            period=f"valid {VALID_FOR.days} days, single use; only keyed hashes are stored",
        ),
        RetentionRule(
            what="printed letters (PDF)",
            period=f"{LETTERS_KEPT.days} days, encrypted; then deleted by an hourly job",
        ),
        RetentionRule(
            what="outgoing email content",
            period="erased once the message is sent, refused or given up; metadata and a keyed hash "
            "of the address are kept",
        ),
        RetentionRule(
            what="research projects' access",
            period="until each project's granted end date (inclusive); the project expires the day after",
        ),
    ]
    return rules + list(details.retention)


def _security(settings: Settings) -> list[SecurityMeasure]:
    keys = (
        "Vault/OpenBao transit: keys never leave the key service"
        if settings.key_backend is KeyBackendKind.vault
        else "key files (0600 in a 0700 folder), to be kept apart from the data and its backups"
    )
    storage = (
        f"S3 object storage ({'HTTPS' if settings.s3_secure else 'plain HTTP on a private network'})"
        if settings.storage_backend is StorageBackend.s3
        else "encrypted files in a local folder"
    )
    return [
        SecurityMeasure(
            measure="encryption of research data",
            how="AES-256-GCM envelope encryption per object, data keys wrapped by a versioned "
            f"key-encryption key; stored in {storage}",
            where="enclave/objects (envelope.py, store.py)",
        ),
        SecurityMeasure(
            measure="key management",
            how=f"{keys}; rotation, rewrap and retirement (enclave keys ...), recorded in the ledger",
            where="infra/keys, enclave/objects/rotation.py",
        ),
        SecurityMeasure(
            measure="pseudonymisation",
            how="pupil references replaced at ingestion by a keyed HMAC per project domain; direct "
            "identifiers dropped; identities kept encrypted in the consent store only",
            where="enclave/datasets/ingestion.py, consent/identity.py",
        ),
        SecurityMeasure(
            measure="encryption of identities",
            how="names, emails and pupil references encrypted (AES-256-GCM) with keyed-hash look-ups",
            where="consent/identity.py",
        ),
        SecurityMeasure(
            measure="data minimisation towards researchers",
            how="only differentially private aggregates (OpenDP) within a granted privacy budget; "
            "no row-level data, no exact counts; scope limited to granted datasets and variables",
            where="dp_queries/, access/projects",
        ),
        SecurityMeasure(
            measure="consent enforcement",
            how="only subjects whose consent for the dataset's purpose is granted are stored at "
            "ingestion and counted at query time; withdrawals erase their rows",
            where="enclave/datasets/ingestion.py, enclave/datasets/erasure.py, consent/decisions",
        ),
        SecurityMeasure(
            measure="access control",
            how="roles with least privilege, steward scope per country and school, ES256 tokens of "
            f"at most {settings.access_token_ttl_seconds} s, TOTP for staff roles, sign-in throttling",
            where="access/accounts, access/dependencies",
        ),
        SecurityMeasure(
            measure="audit",
            how="every action in an append-only, hash-chained ledger under a Merkle tree with signed "
            "checkpoints; reading the ledger is itself audited; verification names the first bad entry",
            where="access/audit, enclave audit verify",
        ),
        SecurityMeasure(
            measure="resilience",
            how="atomic publication of objects, job outbox so no job is lost, readiness checks of "
            "every component; backups of database, object store and keys kept apart",
            where="infra/outbox.py, enclave/readiness.py, docs/operators.md",
        ),
    ]


def _placeholders(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _placeholders(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _placeholders(item, f"{path}[{index}]")
    elif isinstance(value, str) and value.startswith(PLACEHOLDER):
        yield path


def build_record(
    session: Session, settings: Settings, details: Details | None = None, *, now: datetime | None = None
) -> RecordOfProcessing:
    """Assemble the record from the database, the settings and the details file."""
    details = details or load_details()
    datasets = _datasets(session)
    recipients = _recipients(session)
    record = RecordOfProcessing(
        generated_at=now or datetime.now(UTC),
        environment=settings.environment.value,
        controller=details.controller,
        dpo=details.dpo,
        purposes=_purposes(session, details),
        data_subjects=details.data_subjects,
        datasets=datasets,
        recipients=recipients,
        other_recipients=details.recipients,
        transfers=details.transfers,
        transfers_statement=(
            "Transfers listed below, with their safeguards."
            if details.transfers
            else "None: no personal data is transferred to a third country or an international organisation."
        ),
        retention=_retention(settings, details, datasets),
        security_measures=_security(settings),
        placeholders=[],
        points_to_check=_points_to_check(datasets, recipients),
    )
    return record.model_copy(update={"placeholders": list(_placeholders(record))})


def _points_to_check(datasets: Sequence[DatasetEntry], projects: Sequence[ProjectRecipient]) -> list[str]:
    """Special-category variables the software lets through without an Art. 9 ground: the DPO checks."""
    points = [
        f"dataset {d.id} holds special-category variables ({', '.join(d.special_category_variables)}) "
        f"under the consent purpose {d.purpose!r}, not {SPECIAL_CATEGORY_PURPOSE!r} "
        "(Art. 9(2)(a) explicit consent)"
        for d in datasets
        if d.special_category_variables and d.purpose != SPECIAL_CATEGORY_PURPOSE
    ]
    special = {f"{d.id}.{name}" for d in datasets for name in d.special_category_variables}
    for p in projects:
        granted = sorted(special.intersection(p.variables))
        if granted and p.special_category_condition is None:
            points.append(
                f"project {p.project_id} is granted special-category variables ({', '.join(granted)}) "
                "without an Art. 9(2) condition"
            )
    return points


def render(record: RecordOfProcessing, fmt: RecordFormat) -> str:
    """The record as Markdown, JSON or CSV text."""
    if fmt is RecordFormat.json:
        return record.model_dump_json(indent=2) + "\n"
    if fmt is RecordFormat.csv:
        return _csv(record)
    return _markdown(record)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(_cell(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [line(headers), "|" + "---|" * len(headers), *(line(r) for r in rows), ""]


def _project_lines(p: ProjectRecipient) -> list[str]:
    """One research project as a heading and a list: its grounds, its grant, its granted variables."""
    by_dataset: dict[str, list[str]] = {}
    for variable in p.variables:
        dataset, _, name = variable.partition(".")
        by_dataset.setdefault(dataset, []).append(name)
    until = p.end_date.isoformat() if p.end_date else "not set"
    lines = [
        f"#### {p.title}",
        "",
        f"- project `{p.project_id}`, {p.status}, from {p.start_date.isoformat()} until {until}; "
        f"ethics approval {p.ethics_reference}",
        f"- purpose `{p.purpose}`; lawful basis {p.lawful_basis}; Art. 9 condition "
        f"{p.special_category_condition or 'none'}",
        f"- privacy budget granted: ε = {p.granted_epsilon}",
        "- granted variables:",
    ]
    lines += [f"  - `{dataset}`: {', '.join(names)}" for dataset, names in by_dataset.items()]
    lines += [f"  - `{d}`: none" for d in p.datasets if d not in by_dataset]
    return [*lines, ""]


def _markdown(record: RecordOfProcessing) -> str:
    out = [
        "# Record of processing activities (GDPR Art. 30(1))",
        "",
        f"Generated {record.generated_at.isoformat(timespec='seconds')} from the `{record.environment}` "
        "deployment of the LET'S CARE research enclave.",
        "",
    ]
    if record.placeholders:
        out += [
            f"> **Incomplete:** {len(record.placeholders)} fields still read '{PLACEHOLDER}' "
            "(fill them in the details file and export again): "
            + ", ".join(f"`{p}`" for p in record.placeholders),
            "",
        ]
    c = record.controller
    out += ["## (a) Controller and data protection officer", ""]
    out += _table(
        ("", "name", "address", "email", "phone"),
        [
            ("controller", c.name, c.address, c.email, c.phone),
            ("DPO", record.dpo.name, "", record.dpo.email, record.dpo.phone),
        ],
    )
    out += [f"- Joint controllers: {c.joint_controllers}", f"- Representative: {c.representative}", ""]
    out += ["## (b) Purposes of the processing", ""]
    out += _table(
        ("purpose", "description", "Art. 9", "lawful basis"),
        [(p.code, p.description, p.special_category, p.lawful_basis) for p in record.purposes],
    )
    out += ["## (c) Categories of data subjects and of personal data", ""]
    for subject in record.data_subjects:
        out += [f"### {subject.category}", "", subject.description, ""]
        out += [f"- {item}" for item in subject.personal_data] + [""]
    out += ["### Research datasets (pseudonymised)", ""]
    if not record.datasets:
        out += ["No dataset is declared.", ""]
    for d in record.datasets:
        special = ", ".join(d.special_category_variables) or "none"
        out += [
            f"#### `{d.id}`: {d.title}",
            "",
            f"Purpose `{d.purpose}`, pseudonymisation domain `{d.pseudonymisation_domain}`, kept until "
            f"{d.retention_until.isoformat()}. Special-category variables (Art. 9): **{special}**. "
            f"Dropped at ingestion: {', '.join(d.dropped_identifiers)}.",
            "",
        ]
        out += _table(
            ("variable", "type", "Art. 9", "description"),
            [(v.name, v.type, v.special_category, v.description) for v in d.variables],
        )
    out += ["## (d) Recipients", "", "### Approved research projects", ""]
    for p in record.recipients:
        out += _project_lines(p)
    if record.recipients:
        out += [f"Every project receives {ProjectRecipient.model_fields['receives'].default}.", ""]
    else:
        out += ["No research project holds a grant.", ""]
    out += ["### Other recipients", ""]
    out += _table(
        ("name", "role", "receives"), [(r.name, r.role, r.receives) for r in record.other_recipients]
    )
    out += [
        "## (e) Transfers to third countries or international organisations",
        "",
        record.transfers_statement,
        "",
    ]
    if record.transfers:
        out += _table(
            ("destination", "recipient", "safeguards"),
            [(t.destination, t.recipient, t.safeguards) for t in record.transfers],
        )
    out += ["## (f) Time limits for erasure", ""]
    out += _table(("what", "period"), [(r.what, r.period) for r in record.retention])
    out += ["## (g) Technical and organisational security measures (Art. 32)", ""]
    out += _table(
        ("measure", "how", "where"), [(m.measure, m.how, m.where) for m in record.security_measures]
    )
    out += ["## Points to check (Art. 9)", ""]
    out += [f"- {point}" for point in record.points_to_check] or ["None."]
    out += [""]
    return "\n".join(out)


def _model_rows(section: str, item: str, model: BaseModel) -> Iterator[tuple[str, str, str, object]]:
    for name, value in model:
        yield section, item, name, value


def _dataset_rows(d: DatasetEntry) -> Iterator[tuple[str, str, str, object]]:
    for name in ("title", "purpose", "pseudonymisation_domain", "retention_until"):
        yield "datasets", d.id, name, getattr(d, name)
    yield "datasets", d.id, "special_category_variables", d.special_category_variables
    yield "datasets", d.id, "dropped_identifiers", d.dropped_identifiers
    for v in d.variables:
        kind = f"{v.type} (Art. 9)" if v.special_category else v.type
        yield "datasets", d.id, f"variable.{v.name}", kind


def _rows(record: RecordOfProcessing) -> Iterator[tuple[str, str, str, object]]:
    """(section, item, field, value): one row per fact."""
    yield from _model_rows("controller", "controller", record.controller)
    yield from _model_rows("controller", "dpo", record.dpo)
    for p in record.purposes:
        yield from _model_rows("purposes", p.code, p)
    for s in record.data_subjects:
        yield "data_subjects", s.category, "description", s.description
        for item in s.personal_data:
            yield "data_subjects", s.category, "personal_data", item
    for d in record.datasets:
        yield from _dataset_rows(d)
    for r in record.recipients:
        yield from _model_rows("recipients", r.project_id, r)
    for index, o in enumerate(record.other_recipients, start=1):
        yield from _model_rows("other_recipients", str(index), o)
    yield "transfers", "", "statement", record.transfers_statement
    for index, t in enumerate(record.transfers, start=1):
        yield from _model_rows("transfers", str(index), t)
    for rule in record.retention:
        yield "retention", rule.what, "period", rule.period
    for m in record.security_measures:
        yield "security_measures", m.measure, "how", m.how
        yield "security_measures", m.measure, "where", m.where
    for path in record.placeholders:
        yield "placeholders", path, "value", PLACEHOLDER
    for index, point in enumerate(record.points_to_check, start=1):
        yield "points_to_check", str(index), "finding", point


def _csv(record: RecordOfProcessing) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "item", "field", "value"))
    writer.writerow(("record", "", "generated_at", record.generated_at.isoformat(timespec="seconds")))
    for section, item, field, value in _rows(record):
        text = value.isoformat() if isinstance(value, date) else _cell(value)
        writer.writerow((section, neutralise_cell(item), field, neutralise_cell(text)))
    return buffer.getvalue()
