"""The seeded demo: the product on its embedded default, already holding the LET'S CARE story.

``enclave demo`` (``make demo``) seeds once, then serves. Everything goes through the product's own
services, so every rule is enforced and every step is in the ledger:

1. **Consent forms** of the demo set (``consent/data/forms``): Belgium, Bulgaria, Spain and Poland
   in six languages (nl, fr, bg, es, pl and English, offered in every country).
2. **Staff accounts**, one per role (admin, DPO, legal reviewer, researcher) and one data steward per
   country, with known passwords and TOTP already enrolled (development mode only).
3. **Rosters** of the synthetic project (``enclave.synthetic``: 6 countries, 120 schools, 18,000
   students, 2,400 teachers, 4 stages), imported country by country by that country's steward through
   the CSV import functions.
4. **Consent decisions** through ``record_decision`` (form version, text hash, decider and age rules
   checked for each one): most families grant, some refuse, some answer only part of the form, some
   withdraw later, some have not answered. Below the joint band a guardian decides and the child
   assents; in the joint band both consent; from the self-consent age the student decides alone.
   Portugal and Italy have no published form in the demo set, so their families are still pending.
5. **Questionnaire datasets**: one per country (an upload is matched to one country's roster),
   declared in the catalog and ingested by the country's steward: only consenting students are
   stored, pseudonymised and encrypted.
6. **An approved research project** owned by the demo researcher, granted ε = 3 on the six datasets
   by the DPO and, above the second-approval threshold, by the admin as second approver.

A second start finds the seed (the project) and seeds nothing. Production refuses demo accounts.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.audit.service import Actor
from access.principal import Principal
from infra.logging import get_logger
from infra.settings import Settings

if TYPE_CHECKING:
    from enclave.components import Components

log = get_logger(__name__)

DEMO_SEED = 2026
DOMAIN = "letscare-wave1"
DATASET_PREFIX = "wave1-questionnaire-"
PROJECT_TITLE = "Caring relationships and early school leaving across six countries (demo)"
GRANTED_EPSILON = Decimal("3")
PURPOSE = "questionnaires"
EMAIL_DOMAIN = "demo.letscare.example"
OUTCOMES = {"granted": 0.70, "partial": 0.12, "refused": 0.07, "withdrawn": 0.01, "pending": 0.10}
"""Share of students by how their family answered (drawn per student, seeded)."""


class DemoRefused(Exception):
    """Demo accounts (known passwords and TOTP secrets) are refused outside development mode."""


@dataclass(frozen=True)
class DemoAccount:
    """A staff account of the demo with a known password and TOTP secret."""

    key: str
    role: Role
    name: str
    country: str | None = None

    @property
    def email(self) -> str:
        """The sign-in name."""
        return f"{self.key}@{EMAIL_DOMAIN}"

    @property
    def password(self) -> str:
        """The demo password (printed at start-up; development only)."""
        return f"demo-{self.key}-letscare"

    @property
    def totp_secret(self) -> str:
        """The demo TOTP secret, derived from the account key so every start prints the same one."""
        digest = hashlib.sha256(f"letscare-demo-totp:{self.key}".encode()).digest()
        return base64.b32encode(digest[:20]).decode()


COUNTRIES = ("BE", "BG", "ES", "PL", "PT", "IT")
ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("admin", Role.admin, "Demo Administrator"),
    DemoAccount("dpo", Role.dpo, "Demo Data Protection Officer"),
    DemoAccount("legal", Role.legal_reviewer, "Demo Legal Reviewer"),
    DemoAccount("researcher", Role.researcher, "Demo Researcher"),
    *(
        DemoAccount(f"steward-{code.lower()}", Role.data_steward, f"Demo Data Steward {code}", code)
        for code in COUNTRIES
    ),
)


def account(key: str) -> DemoAccount:
    """The demo account with this key."""
    return next(a for a in ACCOUNTS if a.key == key)


def require_development(settings: Settings) -> None:
    """Refuse demo accounts outside development mode, naming the setting."""
    if not settings.is_development:
        raise DemoRefused(
            f"the demo is refused in {settings.environment.value} mode: its accounts have known "
            "passwords and TOTP secrets. Run it with ENCLAVE_ENVIRONMENT=development, and create real "
            "staff with `enclave admin create` in production."
        )


@dataclass
class SeedReport:
    """What the seeding did (or found)."""

    already_seeded: bool = False
    seconds: float = 0.0
    students: int = 0
    guardians: int = 0
    teachers: int = 0
    decisions: int = 0
    decisions_seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    rows_stored: int = 0
    project_id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per step."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the process per step (the machine may be busy with other work)."""


class Steps:
    """Progress of the seeding steps: ``step(name, total)`` then ``advance(n)``; silent by default."""

    def start(self, name: str, total: int) -> None:
        """A step begins."""

    def advance(self, amount: int = 1) -> None:
        """Part of the current step is done."""

    def finish(self) -> None:
        """The current step is done."""


class RichSteps(Steps):
    """Steps shown as a rich progress bar."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None
        self._total = 0

    def start(self, name: str, total: int) -> None:
        self._task = self._progress.add_task(name, total=total)
        self._total = total

    def advance(self, amount: int = 1) -> None:
        self._progress.advance(self._task, amount)

    def finish(self) -> None:
        self._progress.update(self._task, completed=self._total)


@contextmanager
def _transaction(components: Components, report: SeedReport, name: str) -> Iterator[Session]:
    """One committed transaction, its ledger entries chained at once (SQLite has one writer: chaining
    in the background while the next step writes would make one of them wait), its time noted."""
    import time

    from access.audit.sealer import flush_all
    from infra.db import session_scope

    started, cpu = time.perf_counter(), time.process_time()
    with session_scope(components.session_factory) as session:
        yield session
    flush_all()
    report.timings[name] = report.timings.get(name, 0.0) + time.perf_counter() - started
    report.cpu[name] = report.cpu.get(name, 0.0) + time.process_time() - cpu


def is_seeded(session: Session) -> bool:
    """True once the demo project exists (the last seeding step)."""
    from access.projects.models import ResearchProject

    found = session.execute(
        select(ResearchProject.id).where(ResearchProject.title == PROJECT_TITLE).limit(1)
    ).scalar_one_or_none()
    return found is not None


def seed(
    components: Components,
    *,
    students: int = 18_000,
    schools: int = 120,
    steps: Steps | None = None,
) -> SeedReport:
    """Seed the demo once (idempotent: a finished seed is detected and left alone)."""
    import time

    require_development(components.settings)
    steps = steps or Steps()
    report = SeedReport()
    started = time.perf_counter()
    with components.session_factory() as session:
        if is_seeded(session):
            report.already_seeded = True
            return report
    from enclave.synthetic import generate

    data = generate(students=students, schools=schools, seed=DEMO_SEED)
    with _transaction(components, report, "forms") as session:
        _forms(session)
    steps.start("staff accounts", len(ACCOUNTS))
    with _transaction(components, report, "accounts") as session:
        principals = _accounts(session, components, steps)
    steps.finish()
    _rosters(components, principals, data, report, steps)
    _decisions(components, principals, report, steps)
    _datasets(components, principals, data, report, steps)
    steps.start("research project", 1)
    with _transaction(components, report, "project") as session:
        report.project_id = _project(session, components.settings, principals, report.datasets)
    steps.finish()
    report.seconds = time.perf_counter() - started
    return report


# -- forms and accounts -----------------------------------------------------------------------


def _forms(session: Session) -> None:
    from consent.forms.service import load_demo_forms

    load_demo_forms(session, Actor.system())


def _accounts(session: Session, components: Components, steps: Steps) -> dict[str, Principal]:
    """Create the demo accounts that do not exist yet; the principal of each."""
    from access.accounts import mfa, repository, service
    from access.accounts.schemas import AccountCreate

    principals: dict[str, Principal] = {}
    for demo in ACCOUNTS:
        existing = repository.by_email(session, demo.email)
        if existing is None:
            existing = service.create_account(
                session,
                Actor.system(),
                AccountCreate(
                    email=demo.email,
                    display_name=demo.name,
                    roles=[demo.role],
                    country=demo.country,
                    password=demo.password,
                ),
            )
            mfa.start_enrolment(components.keys, existing)
            # The demo's secret is known (derived from the account key) so each start can print it.
            mfa._store_secret(components.keys, existing, demo.totp_secret)
            existing.mfa_enrolled = True
            mfa.issue_recovery_codes(session, existing)
        principals[demo.key] = Principal(
            account_id=existing.id, roles=frozenset({demo.role}), country=demo.country
        )
        steps.advance()
    return principals


# -- rosters ----------------------------------------------------------------------------------


def _rosters(
    components: Components,
    principals: dict[str, Principal],
    data: Any,
    report: SeedReport,
    steps: Steps,
) -> None:
    """Each country's steward imports its students, guardians and teachers (one transaction each)."""
    from consent.identity import IdentityProtector
    from consent.rosters.importing import import_students
    from consent.rosters.importing_guardians import import_guardians
    from consent.rosters.importing_teachers import import_teachers

    protector = IdentityProtector(components.keys)
    steps.start("rosters (students, guardians, teachers)", data.students.height)
    for country in COUNTRIES:
        steward = principals[f"steward-{country.lower()}"]
        pupils = data.students.filter(pl.col("country") == country)
        refs = pupils["student_ref"]
        guardians = data.guardians.filter(pl.col("student_ref").is_in(refs.implode()))
        teachers = data.teachers.filter(pl.col("country") == country)
        with _transaction(components, report, "rosters") as session:
            import_students(session, steward, protector, pupils.write_csv().encode())
            if guardians.height:
                import_guardians(session, steward, protector, guardians.write_csv().encode())
            if teachers.height:
                import_teachers(session, steward, protector, teachers.write_csv().encode())
        report.students += pupils.height
        report.guardians += guardians.height
        report.teachers += teachers.height
        steps.advance(pupils.height)
    steps.finish()


# -- decisions --------------------------------------------------------------------------------


ONE_BY_ONE = 10
"""Students per country whose families' decisions go one by one through ``record_decision``."""


def _decisions(
    components: Components, principals: dict[str, Principal], report: SeedReport, steps: Steps
) -> None:
    """Record the families' decisions through the consent service's checks, one transaction per country."""
    import time

    from access.audit.sealer import flush_all
    from consent.decisions.models import Decision
    from consent.rosters.models import Student
    from enclave.demo_decisions import country_book, record_in_bulk, record_one_by_one

    rng = np.random.default_rng(DEMO_SEED)
    with components.session_factory() as session:
        planned = []
        for country in COUNTRIES:
            done = session.execute(
                select(func.count())
                .select_from(Decision)
                .join(Student, Student.id == Decision.student_id)
                .where(Student.country_code == country)
            ).scalar_one()
            book = None if done else country_book(session, country, datetime.now(UTC))
            if book is None:  # decided before, or no form published here: nobody can decide yet
                report.outcomes["pending"] = report.outcomes.get("pending", 0) + (
                    0 if done else _count_students(session, country)
                )
                continue
            planned.append((book, _plans(book, principals[f"steward-{country.lower()}"], rng, report)))
        session.rollback()
        steps.start("consent decisions", sum(len(s) for _, plans in planned for s in plans))
        started, cpu = time.perf_counter(), time.process_time()
        for book, plans in planned:
            sample = [s for subs in plans[:ONE_BY_ONE] for s in subs]
            rest = [s for subs in plans[ONE_BY_ONE:] for s in subs]
            report.decisions += record_one_by_one(session, sample, steps.advance)
            report.decisions += record_in_bulk(session, book, rest, steps.advance)
            session.commit()
            flush_all()
        report.decisions_seconds = time.perf_counter() - started
    report.timings["decisions"] = report.decisions_seconds
    report.cpu["decisions"] = time.process_time() - cpu
    steps.finish()


def _count_students(session: Session, country: str) -> int:
    from consent.rosters.models import Student

    return int(
        session.execute(
            select(func.count()).select_from(Student).where(Student.country_code == country)
        ).scalar_one()
    )


def _plans(book: Any, steward: Principal, rng: np.random.Generator, report: SeedReport) -> list[list[Any]]:
    """Each student's family's submissions, in order (an empty list for families still pending)."""
    from consent.decisions import ages
    from consent.decisions.models import Channel, Choice, DecidedBy
    from consent.decisions.schemas import DecisionCreate
    from consent.decisions.service import FAMILY_LINK
    from enclave.demo_decisions import Submission

    today = datetime.now(UTC).date()
    names = list(OUTCOMES)
    drawn = rng.choice(len(names), size=len(book.students), p=list(OUTCOMES.values()))
    drawn[: len(names)] = np.arange(len(names))[: len(drawn)]  # every kind of answer in every country
    family = Actor(FAMILY_LINK, Role.guardian)
    child = Actor(FAMILY_LINK, Role.student)
    languages = sorted(book.current)
    plans: list[list[Any]] = []
    for (subject_id, (row_id, year, month, _)), pick in zip(book.students.items(), drawn, strict=True):
        outcome = names[pick]
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        submissions: list[Any] = []
        plans.append(submissions)
        if outcome == "pending":
            continue
        language = _language(languages, rng)
        form = book.forms[book.current[language]]
        texts = {t.audience: t.sha256 for t in form.texts}
        choices = _choices(outcome, [p.purpose for p in form.purposes], rng)
        age = ages.age_on(year, month, today)
        regime = ages.regime(book.rule, age)
        guardian = next(iter(book.guardians.get(row_id, {})), None)
        deciders: list[tuple[DecidedBy, str | None]] = []
        if regime is not ages.Regime.self and guardian is not None:
            deciders.append((DecidedBy.guardian, guardian))
        if regime is not ages.Regime.guardian or ages.assent_needed(book.rule, age):
            deciders.append((DecidedBy.student, None))
        paper = rng.random() < 0.15
        for decided_by, guardian_id in deciders:
            is_guardian = decided_by is DecidedBy.guardian
            channel = Channel.paper if paper else Channel.web
            if not is_guardian and not paper and rng.random() < 0.5:
                channel = Channel.school_session
            data = DecisionCreate(
                subject_id=subject_id,
                decided_by=decided_by,
                guardian_id=guardian_id,
                form_id=form.id,
                text_sha256=texts["guardian" if is_guardian else "child"],
                choices=choices,
                channel=channel,
            )
            actor = steward.actor if paper else (family if is_guardian else child)
            submissions.append(Submission(actor, data, steward if paper else None))
        if outcome == "withdrawn" and deciders:
            # Whoever's consent counts withdraws later: the guardian below the joint band, else the student.
            decided_by, guardian_id = deciders[0] if regime is ages.Regime.guardian else deciders[-1]
            is_guardian = decided_by is DecidedBy.guardian
            data = DecisionCreate(
                subject_id=subject_id,
                decided_by=decided_by,
                guardian_id=guardian_id,
                form_id=form.id,
                text_sha256=texts["guardian" if is_guardian else "child"],
                choices={PURPOSE: Choice.withdrawn},
                channel=Channel.web,
            )
            submissions.append(Submission(family if is_guardian else child, data))
    return plans


def _language(languages: list[str], rng: np.random.Generator) -> str:
    """Most families read the country's language; some English (and Belgian families nl or fr)."""
    local = [code for code in languages if code != "en"]
    if "en" in languages and (not local or rng.random() < 0.1):
        return "en"
    return local[int(rng.integers(0, len(local)))]


def _choices(outcome: str, purposes: list[str], rng: np.random.Generator) -> dict[str, Any]:
    from consent.decisions.models import Choice

    if outcome == "refused":
        return dict.fromkeys(purposes, Choice.declined)
    if outcome == "partial":
        optional = [p for p in purposes if p != PURPOSE]
        declined = set(rng.choice(optional, size=int(rng.integers(1, len(optional) + 1)), replace=False))
        return {p: Choice.declined if p in declined else Choice.granted for p in purposes}
    return dict.fromkeys(purposes, Choice.granted)


# -- datasets and the project -----------------------------------------------------------------

_STAGES = ["1", "2", "3", "4"]


def dataset_schema() -> dict[str, Any]:
    """The catalog schema of the synthetic questionnaire (``enclave.synthetic``)."""

    def numeric(
        name: str, low: float, high: float, description: str, kind: str = "numeric"
    ) -> dict[str, Any]:
        return {"name": name, "type": kind, "min": low, "max": high, "description": description}

    return {
        "subject_id_column": "student_ref",
        "school_column": "school",
        "variables": [
            {
                "name": "country",
                "type": "categorical",
                "categories": list(COUNTRIES),
                "description": "Country",
            },
            {
                "name": "stage",
                "type": "categorical",
                "categories": _STAGES,
                "description": "School stage 1-4",
            },
            {
                "name": "gender",
                "type": "categorical",
                "categories": ["female", "male", "other"],
                "description": "Gender",
            },
            numeric("age", 6, 20, "Age in years", "integer"),
            numeric("ses_quintile", 1, 5, "Socio-economic quintile (1 lowest)", "integer"),
            {
                "name": "migrant_background",
                "type": "boolean",
                "description": "Migrant background",
                "special_category": True,
            },
            {
                "name": "special_needs",
                "type": "boolean",
                "description": "Special educational needs",
                "special_category": True,
            },
            numeric("engagement", 1, 5, "School engagement score (1-5)"),
            numeric("teacher_relationship", 1, 5, "Relationship with teachers (1-5)"),
            numeric("belonging", 1, 5, "Sense of belonging (1-5)"),
            numeric("attendance_pct", 0, 100, "Attendance, percent of school days"),
            numeric("grade_average", 0, 10, "Grade average (0-10)"),
            numeric("esl_risk", 0, 1, "Modelled early-school-leaving risk"),
            {"name": "left_school_early", "type": "boolean", "description": "Left school early"},
        ],
    }


def _datasets(
    components: Components,
    principals: dict[str, Principal],
    data: Any,
    report: SeedReport,
    steps: Steps,
) -> None:
    """Declare one questionnaire dataset per country and have its steward ingest it."""
    from consent.identity import IdentityProtector
    from enclave.datasets import ingestion
    from enclave.datasets import service as catalog
    from enclave.datasets.models import Dataset, DatasetVersion
    from enclave.datasets.schemas import DatasetCreate
    from enclave.objects.store import EncryptedStore

    protector = IdentityProtector(components.keys)
    store = EncryptedStore(None, components.keys, components.storage)
    steps.start("questionnaire datasets (ingested per country)", len(COUNTRIES))
    retention = date.today() + timedelta(days=5 * 365)
    for country in COUNTRIES:
        steward = principals[f"steward-{country.lower()}"]
        dataset_id = DATASET_PREFIX + country.lower()
        report.datasets.append(dataset_id)
        with _transaction(components, report, "datasets") as session:
            if session.get(Dataset, dataset_id) is None:
                catalog.create_dataset(
                    session,
                    steward,
                    DatasetCreate.model_validate(
                        {
                            "id": dataset_id,
                            "title": f"LET'S CARE wave 1 student questionnaire, {country}",
                            "description": "Synthetic wave-1 questionnaire of the demo: engagement, "
                            "relationships, belonging, attendance, grades and early school leaving.",
                            "purpose": PURPOSE,
                            "domain": DOMAIN,
                            "retention_until": retention.isoformat(),
                            "schema": dataset_schema(),
                        }
                    ),
                )
            versions = session.execute(
                select(func.count())
                .select_from(DatasetVersion)
                .where(DatasetVersion.dataset_id == dataset_id)
            ).scalar_one()
            if not versions:
                upload = data.questionnaire.filter(pl.col("country") == country)
                ingested = ingestion.ingest(
                    session,
                    steward,
                    store,
                    protector,
                    dataset_id=dataset_id,
                    data=upload.write_csv().encode(),
                )
                report.rows_stored += ingested.rows_stored
        steps.advance()
    steps.finish()


_PROJECT_VARIABLES = ("country", "stage", "gender", "age", "ses_quintile", "engagement", "belonging")
_MORE_VARIABLES = ("teacher_relationship", "attendance_pct", "grade_average", "left_school_early")


def _project(
    session: Session, settings: Settings, principals: dict[str, Principal], datasets: list[str]
) -> str:
    """The researcher proposes and submits; the DPO approves ε = 3, the admin seconds it."""
    from access.projects.agreement import current_agreement
    from access.projects.decisions import approve_project
    from access.projects.schemas import ApprovalCreate, ProjectCreate
    from access.projects.service import create_project, submit_project

    today = datetime.now(UTC).date()
    agreement = current_agreement()
    variables = [f"{d}.{v}" for d in datasets for v in (*_PROJECT_VARIABLES, *_MORE_VARIABLES)]
    proposal = ProjectCreate.model_validate(
        {
            "title": PROJECT_TITLE,
            "purpose": PURPOSE,
            "lawful_basis": "gdpr_6_1_e_public_task",
            "datasets": datasets,
            "variables": variables,
            "justification": "Estimate how caring teacher-student relationships, belonging and engagement "
            "relate to early school leaving, by country, stage and socio-economic background.",
            "requested_epsilon": str(GRANTED_EPSILON),
            "start_date": today.isoformat(),
            "end_date": (today + timedelta(days=730)).isoformat(),
            "ethics_reference": "LETSCARE-ETH-2026/001",
            "agreement": {"version": agreement.version, "sha256": agreement.sha256, "accepted": True},
            "training": {
                "reference": "GDPR-TRAINING-DEMO",
                "expires_on": (today + timedelta(days=365)).isoformat(),
            },
        }
    )
    researcher = principals["researcher"]
    project = create_project(session, researcher, proposal)
    submit_project(session, researcher, project.id)
    terms = ApprovalCreate(
        granted_epsilon=GRANTED_EPSILON,
        datasets=datasets,
        variables=variables,
        end_date=today + timedelta(days=730),
    )
    threshold = settings.project_second_approval_epsilon
    approve_project(session, principals["dpo"], project.id, terms, second_approval_epsilon=threshold)
    if threshold < GRANTED_EPSILON:
        approve_project(session, principals["admin"], project.id, terms, second_approval_epsilon=threshold)
    return project.id


# -- after start-up ---------------------------------------------------------------------------


def warm_status_cache(components: Components, *, chunk: int = 2_000) -> int:
    """Fill the consent status cache the bulk decisions left empty, in short transactions.

    This is what the periodic status refresh does, run once right after start-up instead of ten
    minutes later, so the first consent checks read cached rows. Returns how many rows were written.
    """
    from access.audit.sealer import flush_all
    from consent.decisions import status_cache
    from infra.db import session_scope

    written = 0
    while True:
        now = datetime.now(UTC)
        with session_scope(components.session_factory) as session:
            due = status_cache.due_for_refresh(session, before=now + timedelta(hours=1), now=now, limit=chunk)
            if due:
                written += status_cache.refresh(session, due, at=now)
        flush_all()
        if len(due) < chunk:
            return written


def warm_in_background(components: Components, delay: float = 2.0) -> None:
    """Start ``warm_status_cache`` on a daemon thread once the server had time to start."""
    import threading
    import time

    def run() -> None:
        time.sleep(delay)
        try:
            warm_status_cache(components)
        except Exception:  # the periodic refresh will do it later
            log.warning("demo.status_cache_warm_failed", exc_info=True)

    threading.Thread(target=run, name="demo-status-cache", daemon=True).start()


# -- what is printed --------------------------------------------------------------------------


START_PAGES = {
    Role.admin: "/docs (staff accounts: /api/admin/accounts)",
    Role.dpo: "/staff/audit, /staff/budgets (projects: /api/projects)",
    Role.legal_reviewer: "/staff/audit",
    Role.data_steward: "/staff/steward/dashboard",
    Role.researcher: "/staff/research",
}
"""Where each role starts after signing in."""


def sign_in_lines(settings: Settings, address: str) -> list[str]:
    """How to sign in as each role (TOTP secrets only in development mode)."""
    lines = [
        f"LET'S CARE enclave demo at {address}",
        f"  staff sign-in page: {address}/staff/login   API docs (Authorize: code in client_secret): "
        f"{address}/docs",
        "  Sign in with the email and password below and the 6-digit code of an authenticator app",
        "  (or `python -c \"import pyotp; print(pyotp.TOTP('SECRET').now())\"`) set up with the secret.",
        "",
    ]
    width = max(len(a.email) for a in ACCOUNTS)
    password_width = max(len(a.password) for a in ACCOUNTS)
    for demo in ACCOUNTS:
        secret = f"  TOTP secret: {demo.totp_secret}" if settings.is_development else ""
        lines.append(
            f"  {demo.role.value:<15} {demo.email:<{width}}  password: {demo.password:<{password_width}}"
            f"{secret}  then {START_PAGES[demo.role]}"
        )
    return lines


def summary_lines(report: SeedReport) -> list[str]:
    """One paragraph on what the seeding did."""
    if report.already_seeded:
        return ["the demo data was seeded before: nothing to do"]
    shares = ", ".join(f"{name} {count:,}" for name, count in report.outcomes.items())
    rate = report.decisions / report.decisions_seconds if report.decisions_seconds else 0.0
    return [
        f"seeded in {report.seconds:.1f} s: {report.students:,} students, {report.guardians:,} "
        f"guardian links, {report.teachers:,} teachers in {len(COUNTRIES)} countries",
        f"  {report.decisions:,} consent decisions in {report.decisions_seconds:.1f} s ({rate:,.0f}/s); "
        f"families: {shares}",
        f"  {len(report.datasets)} questionnaire datasets, {report.rows_stored:,} consenting rows stored; "
        f"project {report.project_id} approved with ε = {GRANTED_EPSILON}",
        "  steps (wall / CPU seconds): "
        + ", ".join(f"{k} {v:.1f}/{report.cpu.get(k, 0.0):.1f}" for k, v in report.timings.items()),
    ]
