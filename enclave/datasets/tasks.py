"""Wiring of the enclave's withdrawal consumer into the task processes (worker and in-process)."""

from __future__ import annotations

from consent.decisions.withdrawals import register_consumer
from enclave.datasets.erasure import DatasetErasure
from enclave.objects.store import EncryptedStore
from infra.keys import key_backend_from_settings
from infra.storage.factory import storage_from_settings
from infra.tasks import task_settings


def _store() -> EncryptedStore:
    settings = task_settings()
    return EncryptedStore(None, key_backend_from_settings(settings), storage_from_settings(settings))


register_consumer(DatasetErasure(_store))
