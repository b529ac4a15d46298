"""Encrypted object storage for research data: envelope format, data keys, store, KEK rotation."""

from enclave.objects.envelope import Binding, ObjectIntegrityError
from enclave.objects.models import DataKey
from enclave.objects.store import (
    KEK_NAME,
    EncryptedStore,
    ObjectAlreadyStored,
    ObjectContext,
    ObjectDestroyed,
    ObjectNotStored,
    StoredObject,
)

__all__ = [
    "KEK_NAME",
    "Binding",
    "DataKey",
    "EncryptedStore",
    "ObjectAlreadyStored",
    "ObjectContext",
    "ObjectDestroyed",
    "ObjectIntegrityError",
    "ObjectNotStored",
    "StoredObject",
]
