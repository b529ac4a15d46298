"""``enclave datasets ingest``: a file from disk, streamed, as a data steward, with a progress bar.

The command runs on the server with its database and keys, like ``enclave admin create``; it acts
for a data steward's account (``--as`` email or account id), whose country and schools scope the
upload exactly as over HTTP, and the ledger records that account as the actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from access.accounts.models import Account
from access.audit.actions import Role
from access.principal import Principal
from consent.identity import IdentityProtector
from enclave.datasets import ingestion
from enclave.objects.store import EncryptedStore
from infra.db import session_scope
from infra.errors import EnclaveError, Forbidden


@dataclass(frozen=True)
class Outcome:
    """What the command prints and its exit code."""

    code: int
    report: ingestion.IngestReport | None = None


def steward_principal(session: Session, who: str) -> Principal:
    """The principal of an active data steward's account, by email or account id."""
    account = session.execute(
        select(Account).where(
            or_(func.lower(Account.email) == who.strip().lower(), Account.id == who.strip())
        )
    ).scalar_one_or_none()
    if account is None or account.status != "active":
        raise Forbidden(f"no active account {who!r}", extra={"reason": "no_account"})
    if Role.data_steward.value not in account.roles or not account.country:
        raise Forbidden(
            f"{who} is not a data steward of a country: only stewards upload research data",
            extra={"reason": "not_a_steward"},
        )
    return Principal(
        account_id=account.id,
        roles=frozenset({Role.data_steward}),
        country=account.country,
        schools=frozenset(account.schools),
    )


def _format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"


def run(
    sessions: sessionmaker[Session],
    store: EncryptedStore,
    *,
    dataset_id: str,
    path: Path,
    who: str,
    fmt: str | None = None,
    quarantine: bool = False,
    console: Console | None = None,
    out: Console | None = None,
) -> Outcome:
    """Ingest ``path`` for the steward ``who`` and print the report; returns the exit code."""
    errors = console or Console(stderr=True)
    out = out or Console()
    if not path.is_file():
        errors.print(f"[red]{path}: no such file[/]")
        return Outcome(2)
    size = path.stat().st_size
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with session_scope(sessions) as session, Progress(*columns, console=errors) as bar:
            principal = steward_principal(session, who)
            task: TaskID = bar.add_task(f"ingesting {path.name}", total=size, rows=0)
            report = ingestion.ingest_stream(
                session,
                principal,
                store,
                IdentityProtector(store.keys),
                dataset_id=dataset_id,
                fmt=_format(path, fmt),
                path=path,
                quarantine=quarantine,
                progress=lambda p: bar.update(task, completed=min(p.bytes_read, size), rows=p.rows_read),
            )
    except ingestion.UploadRejected as rejected:
        errors.print(f"[red]{rejected.detail}[/]")
        _problems(errors, rejected.errors)
        return Outcome(1)
    except EnclaveError as error:
        hint = " (temporary: run the command again later)" if error.retryable else ""
        errors.print(f"[red]{error.detail}[/]{hint}")
        return Outcome(3 if error.retryable else 2)
    table = Table("", "rows", title=f"{report.dataset_id} version {report.version} published")
    table.add_row("in the file", f"{report.rows_in:,}")
    table.add_row("stored (pseudonymised, encrypted)", f"{report.rows_stored:,}")
    table.add_row("excluded: no consent for the purpose", f"{report.excluded_without_consent:,}")
    if quarantine:
        table.add_row("quarantined (bad rows, in the encrypted report)", f"{report.quarantined:,}")
    out.print(table)
    out.print(f"{len(report.objects)} encrypted part(s)")
    return Outcome(0, report)


def _problems(console: Console, problems: Sequence[ingestion.RowError], shown: int = 20) -> None:
    table = Table("row", "column", "problem")
    for problem in problems[:shown]:
        table.add_row(str(problem.row), problem.column, problem.reason)
    console.print(table)
    if len(problems) > shown:
        console.print(f"... and more (the first {shown} are shown)")
