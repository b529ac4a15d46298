"""The decrypted-frame cache: decrypts a version once, never serves an outdated or destroyed one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import polars as pl
import pytest
from sqlalchemy.orm import Session

from consent.decisions import pseudonyms
from enclave.datasets.erasure import DatasetErasure
from enclave.datasets.exceptions import DatasetNotFound
from enclave.datasets.frames import FrameCache
from enclave.datasets.ingestion import ingest
from enclave.datasets.models import Dataset
from enclave.datasets.retention import run_retention
from enclave.objects.rotation import rewrap_all, rotate
from enclave.objects.store import EncryptedStore, ObjectContext
from tests.enclave.test_erasure import old_enough, withdraw

DATASET = "questionnaire-wave1"


class CountingStore(EncryptedStore):
    """The real encrypted store, counting the objects it decrypts."""

    reads = 0

    def open_object(self, session: Session, ctx: ObjectContext) -> Iterator[bytes]:
        self.reads += 1
        return super().open_object(session, ctx)


@pytest.fixture
def store(db_session, world) -> CountingStore:
    components = world["components"]
    return CountingStore(db_session, components.keys, components.storage)


def upload(db_session, world, store, frame: pl.DataFrame | None = None) -> int:
    data = (world["upload"] if frame is None else frame).write_csv().encode()
    report = ingest(db_session, world["steward"], store, world["protector"], dataset_id=DATASET, data=data)
    return report.version


def test_a_version_is_decrypted_once_then_served_from_memory_typed(db_session, world, store):
    upload(db_session, world, store)
    cache = FrameCache(max_bytes=64 * 2**20)
    first = cache.get(db_session, store, DATASET)
    assert store.reads == 1
    second = cache.get(db_session, store, DATASET)
    assert store.reads == 1, "the second call does not decrypt again"
    assert second.frame is first.frame
    assert (first.dataset_id, first.version, first.purpose, first.domain) == (
        DATASET,
        1,
        "questionnaires",
        "letscare-main",
    )
    assert first.frame.columns == ["pseudonym", "gender", "stage", "engagement", "special_needs"]
    assert first.frame.schema["pseudonym"] == pl.String
    assert first.frame.schema["gender"] == pl.Enum(["female", "male", "other"])
    assert first.frame.schema["stage"] == pl.Int64
    assert first.frame.schema["engagement"] == pl.Float64
    assert first.frame.schema["special_needs"] == pl.Boolean
    assert first.frame.height == len(world["granted"])
    assert first.schema.variable("engagement") is not None


def test_a_new_version_is_served_at_once_and_the_old_one_stays_readable(db_session, world, store):
    upload(db_session, world, store)
    cache = FrameCache(max_bytes=64 * 2**20)
    assert cache.get(db_session, store, DATASET).version == 1
    # Another process publishes version 2: nothing tells this cache but the catalog.
    other = EncryptedStore(None, store.keys, store.storage)
    upload(db_session, world, other, world["upload"].head(5))
    latest = cache.get(db_session, store, DATASET)
    assert latest.version == 2
    assert latest.frame.height <= 5
    assert cache.get(db_session, store, DATASET, version=1).frame.height == len(world["granted"])
    assert store.reads == 2, "version 1 stayed in memory beside version 2"
    with pytest.raises(DatasetNotFound):
        cache.get(db_session, store, DATASET, version=3)


def test_an_erasure_is_never_hidden_by_the_cache(db_session, world, store):
    upload(db_session, world, store)
    cache = FrameCache(max_bytes=64 * 2**20)
    subject = old_enough(db_session, world)
    pseudonym = pseudonyms.pseudonymise(db_session, store.keys, "letscare-main", [subject])[subject]
    before = cache.get(db_session, store, DATASET)
    assert pseudonym in before.frame["pseudonym"].to_list()
    notice = withdraw(db_session, world, subject, ["questionnaires"])
    DatasetErasure(lambda: EncryptedStore(None, store.keys, store.storage)).handle(db_session, notice)
    after = cache.get(db_session, store, DATASET)
    assert after.version == before.version
    assert pseudonym not in after.frame["pseudonym"].to_list()
    assert after.frame.height == before.frame.height - 1
    assert after.fingerprint != before.fingerprint


def test_rewrapped_data_keys_give_a_fresh_decryption(db_session, world, store):
    upload(db_session, world, store)
    cache = FrameCache(max_bytes=64 * 2**20)
    before = cache.get(db_session, store, DATASET)
    rotate(store)
    assert rewrap_all(store).rewrapped == 1
    after = cache.get(db_session, store, DATASET)
    assert store.reads == 2, "decrypted again with the rewrapped key"
    assert after.fingerprint[0][2] == before.fingerprint[0][2] + 1
    assert after.frame.equals(before.frame)


def test_a_destroyed_dataset_is_not_served(db_session, session_factory, world, store):
    upload(db_session, world, store)
    cache = FrameCache(max_bytes=64 * 2**20)
    cache.get(db_session, store, DATASET)
    db_session.get(Dataset, DATASET).retention_until = datetime.now(UTC).date()
    db_session.flush()
    assert run_retention(session_factory, store).destroyed == [DATASET]
    db_session.expire_all()
    with pytest.raises(DatasetNotFound):
        cache.get(db_session, store, DATASET)
    assert cache.cached() == [], "the destroyed dataset's plaintext left memory"
    with pytest.raises(DatasetNotFound):
        cache.get(db_session, store, DATASET, version=1)


def test_the_memory_bound_evicts_the_least_recently_used(db_session, world, store):
    upload(db_session, world, store)
    upload(db_session, world, store)
    upload(db_session, world, store)
    size = FrameCache(max_bytes=2**30).get(db_session, store, DATASET).nbytes
    cache = FrameCache(max_bytes=2 * size + size // 2)
    cache.get(db_session, store, DATASET, version=1)
    cache.get(db_session, store, DATASET, version=2)
    cache.get(db_session, store, DATASET, version=1)  # now the most recent
    cache.get(db_session, store, DATASET, version=3)
    assert cache.cached() == [(DATASET, 1), (DATASET, 3)]
    assert cache.cached_bytes <= cache.max_bytes
    reads = store.reads
    cache.get(db_session, store, DATASET, version=2)
    assert store.reads == reads + 1, "an evicted version is decrypted again"
    tiny = FrameCache(max_bytes=size - 1)
    assert tiny.get(db_session, store, DATASET).frame.height > 0
    assert tiny.cached() == [], "a frame larger than the bound is returned, not kept"
    cache.invalidate(DATASET)
    assert cache.cached() == []
