"""The ``enclave`` command line: serve, worker, beat, database migrations, checks and the demo."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from infra.settings import Settings, SettingsError, get_settings

app = typer.Typer(help="LET'S CARE research enclave.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
admin_app = typer.Typer(help="Staff accounts and sign-in keys.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
consent_app = typer.Typer(help="Consent management.", no_args_is_help=True)
app.add_typer(consent_app, name="consent")
forms_app = typer.Typer(help="Versioned consent forms authored as Markdown files.", no_args_is_help=True)
consent_app.add_typer(forms_app, name="forms")
keys_app = typer.Typer(help="Encryption keys of stored research data.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
datasets_app = typer.Typer(help="Research datasets: ingestion of new versions.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
gdpr_app = typer.Typer(help="GDPR records and evidence.", no_args_is_help=True)
app.add_typer(gdpr_app, name="gdpr")
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        console.print(f"[bold red]{exc}[/]")
        raise typer.Exit(2) from None


def _components(settings: Settings):  # type: ignore[no-untyped-def]
    from enclave.components import build_components
    from infra.logging import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    return build_components(settings)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from infra.migrate import current_revision, upgrade

    components = _components(_settings())
    upgrade(components.engine, revision)
    if revision == "head":
        _load_default_rules(components)
    console.print(f"database at revision {current_revision(components.engine)}")


def _load_default_rules(components) -> None:  # type: ignore[no-untyped-def]
    """Give every country without a consent rule the shipped default (idempotent)."""
    from access.audit.service import Actor
    from consent.service import load_default_rules
    from infra.db import session_scope

    with session_scope(components.session_factory) as session:
        loaded = load_default_rules(session, Actor.system())
    if loaded:
        console.print(f"loaded the default consent rules of {len(loaded)} countries")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for empty.")],
) -> None:
    """Revert migrations down to REVISION."""
    from infra.migrate import current_revision, downgrade

    components = _components(_settings())
    downgrade(components.engine, revision)
    console.print(f"database at revision {current_revision(components.engine)}")


@db_app.command("revision")
def db_revision(message: Annotated[str, typer.Argument(help="What the migration changes.")]) -> None:
    """Generate a migration from the difference between the models and the database."""
    from alembic import command

    from enclave.components import MODEL_MODULES
    from infra.migrate import alembic_config

    components = _components(_settings())
    command.revision(alembic_config(components.engine, MODEL_MODULES), message=message, autogenerate=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL deployments only).")] = 1,
) -> None:
    """Serve the API, its docs and the web pages."""
    import uvicorn

    settings = _settings()
    if workers > 1:
        uvicorn.run(
            "enclave.asgi:app", host=host, port=port, workers=workers, proxy_headers=True, access_log=False
        )
        return
    from enclave.app import create_app

    web = create_app(settings, _components(settings))
    web.state.run_scheduler = True
    console.print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(web, host=host, port=port, proxy_headers=True, access_log=False, log_config=None)


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume.")] = "",
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, solo or threads.")] = "prefork",
) -> None:
    """Run a Celery worker on the configured broker."""
    from infra.tasks import QUEUES, celery_app

    settings = _settings()
    if settings.tasks_in_process:
        console.print(
            "[red]ENCLAVE_BROKER_URL is not set: tasks run in-process, there is nothing to consume[/]"
        )
        raise typer.Exit(2)
    _components(settings)
    celery_app.worker_main(
        [
            "worker",
            f"--queues={queues or ','.join(QUEUES)}",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--loglevel={settings.log_level}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def beat(
    schedule_file: Annotated[str, typer.Option(help="Where beat keeps its last-run times.")] = "",
) -> None:
    """Run Celery beat, which sends the periodic jobs (checkpoints, expiries, re-consent, retention)."""
    from infra.tasks import celery_app

    settings = _settings()
    if settings.tasks_in_process:
        console.print("[red]ENCLAVE_BROKER_URL is not set: `enclave serve` runs periodic jobs itself[/]")
        raise typer.Exit(2)
    _components(settings)
    path = schedule_file or str(settings.data_dir / "celerybeat-schedule")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", f"--schedule={path}", f"--loglevel={settings.log_level}"])


@app.command()
def check(
    worker: Annotated[
        bool, typer.Option("--worker", help="Also wait for a worker to answer a ping.")
    ] = False,
) -> None:
    """Print each component and whether it is reachable; exit 1 if any is not."""
    from enclave.readiness import check_all

    components = _components(_settings())
    results = check_all(components)
    if worker and not components.settings.tasks_in_process:
        from enclave.readiness import ComponentStatus
        from infra.tasks import ping

        try:
            answer = ping.apply_async().get(timeout=10)
            results.append(ComponentStatus("worker", True, f"answered from {answer['host']}", 0.0))
        except Exception as exc:
            results.append(ComponentStatus("worker", False, f"no worker answered: {type(exc).__name__}", 0.0))
    table = Table(title="LET'S CARE enclave components")
    for column in ("component", "status", "detail", "ms"):
        table.add_column(column)
    for result in results:
        status = "[green]ok[/]" if result.ok else "[red]FAIL[/]"
        table.add_row(result.name, status, result.detail, f"{result.elapsed_ms:.0f}")
    Console().print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    students: Annotated[int, typer.Option(min=6, max=200_000, help="Synthetic students to seed.")] = 18_000,
    schools: Annotated[int, typer.Option(min=6, max=1_000, help="Synthetic schools to seed.")] = 120,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve once seeded (--no-serve: seed and exit).")
    ] = True,
) -> None:
    """Prepare the embedded default (schema, keys, storage), seed the demo once, and serve it."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from enclave.demo import (
        DemoRefused,
        RichSteps,
        require_development,
        seed,
        sign_in_lines,
        summary_lines,
        warm_in_background,
    )
    from infra.migrate import upgrade

    started = time.perf_counter()
    settings = _settings()
    try:
        require_development(settings)
    except DemoRefused as exc:
        console.print(f"[bold red]{exc}[/]")
        raise typer.Exit(3) from None
    components = _components(settings)
    from infra.logging import configure_logging

    configure_logging("WARNING", settings.log_json)  # progress bars while seeding, not a line per row
    upgrade(components.engine)
    _load_default_rules(components)
    _load_demo_forms(components)
    components.keys.check()
    components.storage.check()
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        report = seed(components, students=students, schools=schools, steps=RichSteps(bar))
    configure_logging(settings.log_level, settings.log_json)
    out = Console()
    for line in summary_lines(report):
        out.print(line, soft_wrap=True, highlight=False)
    out.print(f"ready in {time.perf_counter() - started:.1f} s", highlight=False)
    for line in sign_in_lines(settings, f"http://{host}:{port}"):
        out.print(line, soft_wrap=True, highlight=False, markup=False)
    if serve_after:
        warm_in_background(components)
        serve(host=host, port=port, workers=1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[str, typer.Option(help="Also save the checkpoint to this file (for reviewers).")] = "",
) -> None:
    """Sign a checkpoint of the ledger now (and optionally save it for later verification)."""
    import json

    from access.audit.service import SignedCheckpoint, create_checkpoint
    from infra.db import session_scope

    components = _components(_settings())
    with session_scope(components.session_factory) as session:
        checkpoint = SignedCheckpoint.from_row(create_checkpoint(session, components.keys))
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(checkpoint.to_json(), handle, indent=2)
    Console().print_json(data=checkpoint.to_json())


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        str, typer.Option(help="A checkpoint file saved earlier: prove the ledger only grew since.")
    ] = "",
) -> None:
    """Recompute the hash chain, the Merkle tree and every signature; exit 1 naming the first bad entry."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from access.audit.actions import AUDIT_VERIFIED
    from access.audit.service import SIGNING_KEY, Actor, SignedCheckpoint, head, record, verify_ledger
    from infra.db import session_scope

    components = _components(_settings())
    saved = None
    if checkpoint:
        try:
            with open(checkpoint, encoding="utf-8") as handle:
                saved = SignedCheckpoint.from_json(json.load(handle))
        except (OSError, ValueError) as exc:
            console.print(f"[red]cannot read the checkpoint file: {exc}[/]")
            raise typer.Exit(2) from None
    public_keys = components.keys.public_keys(SIGNING_KEY)
    with components.session_factory() as session:
        total, _ = head(session)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar, components.engine.connect() as connection:
        task = bar.add_task("verifying", total=total)
        report = verify_ledger(
            connection, public_keys, saved, progress=lambda n: bar.update(task, completed=n)
        )
    with session_scope(components.session_factory) as session:
        record(
            session,
            Actor.system(),
            AUDIT_VERIFIED,
            target_type="audit_ledger",
            details={"entries": report.entries, "ok": report.ok, "first_bad_seq": report.first_bad_seq},
        )
    out = Console()
    out.print(
        f"entries: {report.entries}  root: {report.root_hash}  checkpoints: {report.checkpoints_checked}"
    )
    if report.ok:
        out.print("[green]ledger verified: no entry changed, removed, inserted or reordered[/]")
        return
    out.print(f"[red]ledger verification FAILED; first bad sequence number: {report.first_bad_seq}[/]")
    for found in report.problems:
        out.print(f"  - [{found.kind}] seq {found.seq}: {found.message}")
    raise typer.Exit(1)


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="Email address the administrator signs in with.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    password_from_stdin: Annotated[
        bool, typer.Option("--password-from-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Create an administrator with TOTP enrolled; prints the TOTP secret and recovery codes once."""
    from pydantic import ValidationError

    from access.accounts.bootstrap import create_admin
    from infra.db import session_scope
    from infra.errors import EnclaveError

    components = _components(_settings())
    if password_from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with session_scope(components.session_factory) as session:
            created = create_admin(session, components.keys, email=email, name=name, password=password)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in exc.errors())
        console.print(f"[red]invalid {fields}[/]")
        raise typer.Exit(2) from None
    except EnclaveError as exc:
        console.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(2) from None
    out = Console()
    out.print(f"account id: {created.account_id}")
    out.print("Add this secret to an authenticator app now; it is not shown again.")
    out.print(f"TOTP secret: {created.totp_secret}")
    out.print(f"otpauth URI: {created.otpauth_uri}", soft_wrap=True)
    out.print("Recovery codes (each works once instead of a code; keep them offline):")
    for code in created.recovery_codes:
        out.print(f"  {code}")


@admin_app.command("rotate-token-key")
def admin_rotate_token_key() -> None:
    """Start signing access tokens with a new key version; tokens of older versions still verify."""
    from access.accounts.tokens import SIGNING_KEY

    components = _components(_settings())
    components.keys.jws_key_id(SIGNING_KEY)  # creates the key on first use, with the right kind
    version = components.keys.rotate(SIGNING_KEY)
    Console().print(f"access tokens are now signed with {SIGNING_KEY}:v{version}")


@admin_app.command("retire-token-key")
def admin_retire_token_key(
    below: Annotated[int, typer.Option(help="Refuse tokens signed by versions older than this one.")],
) -> None:
    """Stop accepting tokens signed by older versions of the token key (after they expired)."""
    from access.accounts.tokens import SIGNING_KEY

    components = _components(_settings())
    components.keys.retire(SIGNING_KEY, below)
    Console().print(f"tokens signed by versions below {below} are refused from now on")


def _load_demo_forms(components) -> None:  # type: ignore[no-untyped-def]
    """Publish the shipped demo consent forms (idempotent: unchanged files are skipped)."""
    from access.audit.service import Actor
    from consent.forms.service import load_demo_forms
    from infra.db import session_scope

    with session_scope(components.session_factory) as session:
        created = [p for p in load_demo_forms(session, Actor.system()) if p.created]
    if created:
        console.print(f"published {len(created)} demo consent forms")


@forms_app.command("load")
def forms_load(
    paths: Annotated[list[str], typer.Argument(help="Form files (.md) or folders of them.")],
) -> None:
    """Publish form versions from Markdown files, all or none; files published before are skipped."""
    from pathlib import Path

    from access.audit.service import Actor
    from consent.forms.service import form_files, load_form_file
    from infra.db import session_scope
    from infra.errors import EnclaveError

    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            console.print(f"[red]{name}: no such file or folder[/]")
            raise typer.Exit(2)
        files.extend(form_files(path) if path.is_dir() else [path])
    components = _components(_settings())
    out = Console()
    current = ""
    try:
        with session_scope(components.session_factory) as session:
            for path in files:
                current = str(path)
                published = load_form_file(session, Actor.system(), path)
                form = published.form
                state = "published" if published.created else "unchanged"
                out.print(
                    f"{state}: {form.country_code}/{form.language} v{form.version} "
                    f"id={form.id} sha256={form.sha256}  ({path})",
                    soft_wrap=True,
                )
    except EnclaveError as exc:
        console.print(f"[red]{current}: {exc.detail}[/] (nothing was published)")
        raise typer.Exit(2) from None


@forms_app.command("list")
def forms_list(
    country: Annotated[str | None, typer.Option(help="Only this country (ISO 3166-1 alpha-2).")] = None,
    language: Annotated[str | None, typer.Option(help="Only this language (ISO 639-1).")] = None,
) -> None:
    """List published form versions with their hashes and purposes (* = required)."""
    from consent.forms.service import list_forms
    from infra.db import session_scope
    from infra.errors import EnclaveError

    components = _components(_settings())
    table = Table("id", "country", "language", "version", "published", "valid until", "purposes", "sha256")
    try:
        with session_scope(components.session_factory) as session:
            for form in list_forms(session, country=country, language=language):
                purposes = " ".join(p.purpose + ("*" if p.required else "") for p in form.purposes)
                table.add_row(
                    str(form.id),
                    form.country_code,
                    form.language,
                    str(form.version),
                    form.published_at.isoformat(timespec="seconds"),
                    form.valid_until.isoformat() if form.valid_until else "",
                    purposes,
                    form.sha256,
                )
    except EnclaveError as exc:
        console.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(2) from None
    Console().print(table)


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option(help="Folder for the CSV (and Parquet) files.")] = Path("demo-data"),
    students: Annotated[int, typer.Option(min=1, max=5_000_000, help="How many students.")] = 18_000,
    schools: Annotated[int, typer.Option(min=1, max=10_000, help="How many schools.")] = 120,
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 2026,
    parquet: Annotated[bool, typer.Option(help="Write the questionnaire as Parquet.")] = False,
) -> None:
    """Write synthetic LET'S CARE rosters (students, guardians, teachers) and a questionnaire dataset."""
    from enclave.synthetic import generate, write_rosters

    data = generate(students=students, schools=schools, seed=seed)
    for name, path in write_rosters(data, out, parquet=parquet).items():
        console.print(f"{name}: {path}")


@keys_app.command("status")
def keys_status() -> None:
    """Show the newest key-encryption key version and how many live data keys each version wraps."""
    from enclave.objects.rotation import version_counts
    from enclave.objects.store import store_for
    from infra.db import session_scope

    components = _components(_settings())
    store = store_for(components)
    latest = store.keys.latest_version(store.kek_name)
    with session_scope(components.session_factory) as session:
        counts = version_counts(session)
    table = Table("KEK version", "live data keys")
    for version in sorted({latest, *counts}):
        table.add_row(
            f"v{version}" + (" (newest)" if version == latest else ""), f"{counts.get(version, 0):,}"
        )
    Console().print(table)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new key-encryption key version; new objects use it. Then run `enclave keys rewrap`."""
    from enclave.objects.rotation import rotate
    from enclave.objects.store import store_for

    store = store_for(_components(_settings()))
    version = rotate(store)
    Console().print(f"{store.kek_name} is now at version {version}; run `enclave keys rewrap` next")


@keys_app.command("rewrap")
def keys_rewrap(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Data keys per transaction.")] = 500,
) -> None:
    """Rewrap every live data key to the newest KEK version, without re-encrypting data (resumable)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from enclave.objects.rotation import pending, rewrap_all
    from enclave.objects.store import store_for

    store = store_for(_components(_settings()))
    latest, total = pending(store)
    columns = (*Progress.get_default_columns()[:2], BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"rewrapping to v{latest}", total=total)
        report = rewrap_all(store, batch_size=batch_size, progress=lambda moved: bar.advance(task, moved))
    Console().print(
        f"{report.rewrapped:,} data keys rewrapped to version {report.version}; {report.remaining:,} left"
    )
    if report.failed:
        console.print(f"[red]{report.failed:,} wrapped data keys did not open and were left as they are[/]")
    if report.remaining:
        raise typer.Exit(1)


@keys_app.command("retire")
def keys_retire(
    below: Annotated[int, typer.Option(min=2, help="Retire every KEK version older than this one.")],
) -> None:
    """Retire old KEK versions; refused while a live data key is still wrapped by one of them."""
    from enclave.objects.rotation import retire
    from enclave.objects.store import store_for
    from infra.errors import EnclaveError

    store = store_for(_components(_settings()))
    try:
        retire(store, below)
    except EnclaveError as exc:
        console.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(1) from None
    Console().print(
        f"{store.kek_name} versions below {below} are retired: nothing they wrapped opens any more"
    )


class _RecordFormat(StrEnum):
    markdown = "markdown"
    json = "json"
    csv = "csv"


def _require_current_schema(components) -> None:  # type: ignore[no-untyped-def]
    """Exit 1 with a reason when the database cannot be reached or is not at the code's revision."""
    from sqlalchemy.exc import SQLAlchemyError

    from infra.migrate import current_revision, head_revision

    try:
        current, head = current_revision(components.engine), head_revision(components.engine)
    except SQLAlchemyError as exc:
        console.print(f"cannot reach the database: {type(exc).__name__}", style="red", markup=False)
        raise typer.Exit(1) from None
    if current != head:
        console.print(
            f"the database schema is at {current or 'nothing'}, the code expects {head}: "
            "run `enclave db upgrade`",
            style="red",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


@gdpr_app.command("record-of-processing")
def gdpr_record_of_processing(
    fmt: Annotated[
        _RecordFormat, typer.Option("--format", help="markdown, json or csv.")
    ] = _RecordFormat.markdown,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of the terminal.")] = None,
    details: Annotated[
        Path | None,
        typer.Option(help="TOML file naming the controller, DPO, processors, transfers (default: shipped)."),
    ] = None,
) -> None:
    """Export the record of processing activities (GDPR Art. 30) from the database and the settings."""
    from enclave.processing_record import DetailsError, RecordFormat, build_record, load_details, render

    settings = _settings()
    try:
        loaded = load_details(details)
    except DetailsError as exc:
        console.print(f"cannot use the details file: {exc}", style="red", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    components = _components(settings)
    _require_current_schema(components)
    with components.session_factory() as session:
        record = build_record(session, settings, loaded)
    text = render(record, RecordFormat(fmt.value))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"record of processing written to {out}")
    if record.placeholders:
        console.print(
            f"[yellow]{len(record.placeholders)} fields still read 'TO BE COMPLETED': "
            "pass a completed --details file[/]"
        )


@datasets_app.command("ingest")
def datasets_ingest(
    dataset_id: Annotated[str, typer.Argument(help="The dataset's id in the catalog.")],
    file: Annotated[Path, typer.Argument(help="CSV (UTF-8) or Parquet file with the declared columns.")],
    steward: Annotated[
        str, typer.Option("--as", help="Email or account id of the data steward the upload is for.")
    ],
    quarantine: Annotated[
        bool,
        typer.Option("--quarantine", help="Store the good rows; set bad ones aside in an encrypted report."),
    ] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or parquet (default: from the file name).")
    ] = None,
) -> None:
    """Ingest a file as a new version, streamed from disk with bounded memory, with a progress bar."""
    from enclave.datasets import ingest_cli
    from enclave.objects.store import EncryptedStore

    if fmt not in (None, "csv", "parquet"):
        console.print("[red]--format must be csv or parquet[/]")
        raise typer.Exit(2)
    components = _components(_settings())
    store = EncryptedStore(None, components.keys, components.storage)
    outcome = ingest_cli.run(
        components.session_factory,
        store,
        dataset_id=dataset_id,
        path=file,
        who=steward,
        fmt=fmt,
        quarantine=quarantine,
        console=console,
    )
    if outcome.code:
        raise typer.Exit(outcome.code)


def main() -> None:
    """Entry point of the ``enclave`` command."""
    try:
        app()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
