"""Jobs of the datasets: the withdrawal consumer (erasure) and the daily retention run."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from consent.decisions.withdrawals import register_consumer
from consent.requests.sources import register_source
from enclave.datasets.erasure import DatasetErasure
from enclave.datasets.sources import EnclaveDatasets
from enclave.objects.store import EncryptedStore
from infra.keys import key_backend_from_settings
from infra.storage.factory import storage_from_settings
from infra.tasks import DatabaseTask, celery_app, register_periodic, task_session_factory, task_settings


def _store() -> EncryptedStore:
    settings = task_settings()
    return EncryptedStore(None, key_backend_from_settings(settings), storage_from_settings(settings))


register_consumer(DatasetErasure(_store))
register_source(EnclaveDatasets(_store))

RETENTION_TASK = "erasure.dataset_retention"


@celery_app.task(name=RETENTION_TASK, base=DatabaseTask, bind=True)
def dataset_retention(self: DatabaseTask) -> dict[str, Any]:
    """Warn the DPO 30 days ahead, then destroy datasets on their retention date (idempotent)."""
    from enclave.datasets.retention import run_retention

    result = run_retention(task_session_factory(), _store())
    return {"warned": result.warned, "destroyed": result.destroyed}


register_periodic("dataset-retention", RETENTION_TASK, crontab(hour=3, minute=30))
