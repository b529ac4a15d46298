"""The process's shared components, built once from the settings (composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from infra.db import engine_from_settings, make_session_factory
from infra.settings import Settings
from infra.storage import ObjectStorage, storage_from_settings
from infra.tasks import configure_celery

if TYPE_CHECKING:
    from infra.keys import KeyBackend

MODEL_MODULES = [
    "infra.outbox",
    "infra.email.models",
    "access.audit.models",
    "access.accounts.models",
    "access.projects.models",
    "consent.models",
    "consent.forms.models",
    "consent.rosters.models",
    "consent.decisions.models",
    "consent.requests.models",
    "consent.invitations.models",
    "enclave.objects.models",
    "enclave.datasets.models",
    "dp_queries.models",
]
"""Every module that defines tables; imported so metadata and migrations see them all."""

TASK_MODULES = [
    "infra.tasks",
    "infra.outbox",
    "infra.email.tasks",
    "access.audit.tasks",
    "access.projects.tasks",
    "consent.decisions.tasks",
    "enclave.datasets.tasks",
    "enclave.datasets.ingest_tasks",
    "consent.invitations.tasks",
    "dp_queries.tasks",
]
"""Every module that defines Celery tasks; imported by the app, the worker and beat."""


@dataclass
class Components:
    """Engine, sessions, storage and keys of one process."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    _storage: ObjectStorage | None = None
    _keys: KeyBackend | None = None

    @property
    def storage(self) -> ObjectStorage:
        """The object store (created on first use, so a down store does not stop start-up)."""
        if self._storage is None:
            self._storage = storage_from_settings(self.settings)
        return self._storage

    @property
    def keys(self) -> KeyBackend:
        """The key backend (created on first use)."""
        if self._keys is None:
            from infra.keys import key_backend_from_settings

            self._keys = key_backend_from_settings(self.settings)
        return self._keys


def import_wiring() -> None:
    """Import every model and task module so tables and tasks are registered."""
    import importlib

    for module in (*MODEL_MODULES, *TASK_MODULES):
        importlib.import_module(module)


def build_components(settings: Settings, *, engine: Engine | None = None) -> Components:
    """Build the components for this process and configure Celery with them."""
    import_wiring()
    engine = engine or engine_from_settings(settings)
    configure_celery(settings, engine=engine)
    from access.audit.service import install_audit_hooks
    from access.audit.tasks import schedule_checkpoints
    from infra.outbox import install_session_hooks

    install_session_hooks()
    install_audit_hooks()
    schedule_checkpoints(settings.audit_checkpoint_interval_seconds)
    return Components(settings=settings, engine=engine, session_factory=make_session_factory(engine))
