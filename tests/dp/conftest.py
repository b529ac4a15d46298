"""A committed world for DP query tests: a school's roster with consents, an ingested dataset, projects.

DP releases lock the project's row and commit (and the race tests need commits other connections
see), so these tests run on a database of their own whose data is really committed, built once per
run. Each test makes its own project with its own budget, so tests do not share budgets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from access.audit.actions import Role
from access.audit.sealer import sealer_for
from access.principal import Principal
from access.projects import service as projects
from access.projects.models import ProjectMember, ProjectStatus, ResearchProject
from access.projects.rules import utc_today
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.identity import IdentityProtector
from consent.rosters.importing import import_students
from consent.rosters.importing_guardians import import_guardians
from consent.rosters.models import Guardian, Guardianship, Student
from enclave.app import create_app
from enclave.components import Components, build_components
from enclave.datasets import ingestion
from enclave.datasets import service as catalog
from enclave.datasets.schemas import DatasetCreate
from enclave.objects.store import EncryptedStore
from enclave.synthetic import generate
from infra.db import make_engine, make_session_factory, session_scope
from infra.migrate import upgrade
from infra.settings import Settings, load_settings
from infra.tasks import configure_celery
from tests.conftest import recreate_database
from tests.support.auth import StaffUser, auth_headers, create_staff
from tests.support.consent import load_rules, make_form
from tests.support.projects import make_principal, proposal

DATASET = "questionnaire-wave1"
VARIABLES = ("gender", "stage", "engagement", "special_needs")


@dataclass
class Decider:
    """Who decided for a consenting student (to withdraw it again in a test)."""

    by: str
    guardian_id: str | None
    text_sha256: str


@dataclass
class DpWorld:
    """The committed database, its settings and components, the steward and the dataset."""

    engine: Engine
    settings: Settings
    components: Components
    steward: Principal
    store: EncryptedStore
    form_id: int
    version: int
    granted: list[str]
    deciders: dict[str, list[Decider]] = field(default_factory=dict)
    withdrawn: list[str] = field(default_factory=list)

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on the committed database (each commit is real)."""
        return self.components.session_factory


def _build(session: Session, components: Components, store: EncryptedStore) -> dict[str, Any]:
    load_rules(session)
    protector = IdentityProtector(components.keys)
    data = generate(students=400, schools=6, seed=5)
    school = data.students.filter(pl.col("country") == "ES")["school"][0]
    students = data.students.filter(pl.col("school") == school)
    base = make_principal(session, Role.data_steward)
    steward = Principal(account_id=base.account_id, roles=base.roles, country="ES", schools=frozenset())
    import_students(session, steward, protector, students.write_csv().encode())
    import_guardians(
        session, steward, protector, data.guardians.filter(pl.col("school") == school).write_csv().encode()
    )
    form = make_form(session, "ES", "es")
    guardian_text = next(t.sha256 for t in form.texts if t.audience == "guardian")
    child_text = next(t.sha256 for t in form.texts if t.audience == "child")
    deciders: dict[str, list[Decider]] = {}
    rows = session.execute(
        select(Student).where(Student.school_code == school).order_by(Student.id)
    ).scalars()
    now = datetime.now(UTC)
    for number, student in enumerate(rows):
        if number % 4 == 3:
            continue  # a quarter never consents
        guardian = (
            session.execute(
                select(Guardian)
                .join(Guardianship, Guardianship.guardian_id == Guardian.id)
                .where(Guardianship.student_id == student.id)
            )
            .scalars()
            .first()
        )
        age = now.year - student.birth_year - (1 if now.month <= student.birth_month else 0)
        who = (
            [Decider("student", None, child_text)]
            if age >= 14
            else [Decider("guardian", guardian.guardian_id if guardian else None, guardian_text)]
        )
        if 7 <= age < 14:
            who.append(Decider("student", None, child_text))
        for decider in who:
            record_decision(
                session,
                steward.actor,
                DecisionCreate(
                    subject_id=student.subject_id,
                    decided_by=decider.by,
                    guardian_id=decider.guardian_id,
                    form_id=form.id,
                    text_sha256=decider.text_sha256,
                    choices={"questionnaires": "granted"},
                    channel="paper",
                ),
            )
        deciders[student.subject_id] = who
    catalog.create_dataset(
        session,
        steward,
        DatasetCreate.model_validate(
            {
                "id": DATASET,
                "title": "Questionnaire, first wave",
                "purpose": "questionnaires",
                "domain": "letscare-main",
                "retention_until": (now + timedelta(days=365)).date().isoformat(),
                "schema": {
                    "subject_id_column": "student_ref",
                    "school_column": "school",
                    "drop_columns": ["country"],
                    "variables": [
                        {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
                        {"name": "stage", "type": "integer", "min": 1, "max": 4},
                        {"name": "engagement", "type": "numeric", "min": 1, "max": 5},
                        {"name": "special_needs", "type": "boolean", "special_category": True},
                    ],
                },
            }
        ),
    )
    upload = data.questionnaire.filter(pl.col("school") == school).select(
        "student_ref", "school", "country", "gender", "stage", "engagement", "special_needs"
    )
    report = ingestion.ingest(
        session, steward, store, protector, dataset_id=DATASET, data=upload.write_csv().encode()
    )
    return {
        "steward": steward,
        "form_id": form.id,
        "version": report.version,
        "granted": list(deciders),
        "deciders": deciders,
    }


@pytest.fixture(scope="session")
def dp_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DpWorld]:
    """The committed world, built once per run on a database of its own."""
    url = recreate_database("enclave_test_dp")
    engine = make_engine(url, pool_size=30)
    upgrade(engine)
    data_dir: Path = tmp_path_factory.mktemp("dp-data")
    settings = load_settings(
        environment="test", data_dir=data_dir, database_url=url, log_json=True, log_level="WARNING"
    )
    components = build_components(settings, engine=engine)
    store = EncryptedStore(None, components.keys, components.storage)
    with session_scope(make_session_factory(engine)) as session:
        built = _build(session, components, store)
    try:
        yield DpWorld(engine=engine, settings=settings, components=components, store=store, **built)
    finally:
        sealer_for(engine).flush()  # chain this run's last entries before the database goes
        engine.dispose()


@pytest.fixture
def world(dp_world: DpWorld) -> DpWorld:
    """The committed world, with this process's Celery pointed at its database (tasks run in-process)."""
    configure_celery(dp_world.settings, engine=dp_world.engine)
    return dp_world


def make_researcher(world: DpWorld) -> StaffUser:
    """A committed researcher account."""
    with session_scope(world.sessions) as session:
        return create_staff(session, world.components, roles=[Role.researcher])


def make_staff(world: DpWorld, *roles: Role) -> StaffUser:
    """A committed staff account with these roles (MFA enrolled when they need it)."""
    with session_scope(world.sessions) as session:
        return create_staff(session, world.components, roles=list(roles))


def make_project(
    world: DpWorld,
    owner: StaffUser,
    *,
    epsilon: str = "1.0",
    members: tuple[StaffUser, ...] = (),
    variables: tuple[str, ...] = ("gender", "stage", "engagement"),
    datasets: tuple[str, ...] = (DATASET,),
    status: ProjectStatus = ProjectStatus.active,
    end_in_days: int = 300,
) -> str:
    """A committed project granted ``epsilon`` on the dataset's ``variables``, with these members."""
    researcher = Principal(account_id=owner.account_id, roles=frozenset({Role.researcher}))
    today = utc_today()
    with session_scope(world.sessions) as session:
        project = projects.create_project(
            session,
            researcher,
            proposal(datasets=list(datasets), variables=[f"{DATASET}.{v}" for v in VARIABLES]),
        )
        project.status = status.value
        project.review_round = 1
        project.granted_epsilon = Decimal(epsilon)
        project.allowed_datasets = list(datasets)
        project.allowed_variables = [f"{DATASET}.{v}" for v in variables]
        project.granted_end_date = today + timedelta(days=end_in_days)
        project.approved_at = datetime.now(UTC)
        for member in members:
            session.add(
                ProjectMember(
                    project_id=project.id,
                    account_id=member.account_id,
                    role="member",
                    added_by=owner.account_id,
                )
            )
        return project.id


def set_project(world: DpWorld, project_id: str, **values: Any) -> None:
    """Change a committed project's columns (status, dates, grant)."""
    with session_scope(world.sessions) as session:
        project = session.get(ResearchProject, project_id)
        assert project is not None
        for name, value in values.items():
            setattr(project, name, value)


@pytest.fixture
def app_client(world: DpWorld) -> Iterator[TestClient]:
    """HTTP client on an app serving the committed world."""
    app = create_app(world.settings, world.components)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def headers(client: TestClient, user: StaffUser) -> dict[str, str]:
    """Bearer headers for a signed-in user."""
    return auth_headers(client, user)


def count_spec(**overrides: Any) -> dict[str, Any]:
    """A count of the dataset by gender at ε = 0.1, as JSON."""
    spec: dict[str, Any] = {
        "dataset": DATASET,
        "statistic": "count",
        "group_by": ["gender"],
        "epsilon": "0.1",
    }
    spec.update(overrides)
    return spec


def mean_spec(upper: float = 5.0, **overrides: Any) -> dict[str, Any]:
    """The mean engagement with clipping bounds [1, upper] at ε = 0.1, as JSON."""
    spec: dict[str, Any] = {
        "dataset": DATASET,
        "statistic": "mean",
        "variable": "engagement",
        "bounds": [1.0, upper],
        "epsilon": "0.1",
    }
    spec.update(overrides)
    return spec
