"""Decrypted frames for the query engine: a small in-process cache, checked against the catalog.

``frames.get(session, store, dataset_id)`` answers with the latest published version (or the one
asked for) as a typed Polars frame: ``pseudonym`` plus the schema's variables. The first call
decrypts the version's objects segment by segment into memory (never to disk) and reads the Parquet
from there; later calls answer from memory.

Every call first asks the database, cheaply (two indexed look-ups), what the answer should be: the
version's number, its object names and the data keys (ids and wrapping KEK version) of those
objects. That fingerprint is the cache key, so an entry is never served once

* a new version is published (the latest one is another number), by this process or another;
* an erasure rewrote the version (other object names, other data keys);
* the dataset was destroyed at its retention date (no published version is left: ``DatasetNotFound``);
* the data keys were rewrapped (another KEK version), which ``retire`` requires before an old KEK
  version stops opening anything.

``invalidate`` drops entries at once (erasure and retention call it in their own process, so the
memory of the plaintext goes early too). The cache holds at most ``max_bytes`` of frames (Polars'
estimated size), the least recently used going first; a frame larger than the bound is returned
but not kept.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import polars as pl
from sqlalchemy import Integer, Select, String, and_, bindparam, func, select
from sqlalchemy.orm import Session

from enclave.datasets.exceptions import DatasetNotFound
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.datasets.schemas import DatasetSchema, Variable, VariableType
from enclave.objects.models import DataKey
from enclave.objects.store import EncryptedStore, ObjectContext
from infra.logging import get_logger

log = get_logger(__name__)

PSEUDONYM = "pseudonym"
DEFAULT_MAX_BYTES = 1024**3

Fingerprint = tuple[tuple[str, str, int | None], ...]
"""Per object of the version: (object name, data key id, KEK version of the wrapped key)."""


@dataclass(frozen=True)
class LoadedFrame:
    """A published dataset version, decrypted: what the query engine works on.

    ``frame`` has the column ``pseudonym`` (String) and the schema's variables, typed (categorical as
    ``Enum`` of the declared categories, numeric ``Float64``, integer ``Int64``, boolean, date).
    """

    dataset_id: str
    version: int
    schema: DatasetSchema
    purpose: str
    domain: str
    frame: pl.DataFrame
    fingerprint: Fingerprint = field(default=(), compare=False)
    """The objects and data keys the frame was decrypted from (changes on erasure and rewrap)."""
    nbytes: int = field(default=0, compare=False)
    """Polars' estimate of the frame's size in memory."""


def polars_type(variable: Variable) -> pl.DataType:
    """The Polars type of a variable's column."""
    kind = variable.type
    if kind is VariableType.numeric:
        return pl.Float64()
    if kind is VariableType.integer:
        return pl.Int64()
    if kind is VariableType.boolean:
        return pl.Boolean()
    if kind is VariableType.date:
        return pl.Date()
    return pl.Enum(variable.categories or [])


@dataclass(frozen=True)
class _Target:
    dataset_id: str
    version: int
    schema: DatasetSchema
    purpose: str
    domain: str
    objects: tuple[str, ...]
    fingerprint: Fingerprint


class FrameCache:
    """Decrypted versions kept in memory, bounded by ``max_bytes``; one per process (``frames``)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int], LoadedFrame] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self.loads = 0
        """How many times a version was decrypted (for tests and benchmarks)."""

    @property
    def max_bytes(self) -> int:
        """The bound on the cached frames' estimated size (``ENCLAVE_FRAME_CACHE_BYTES`` by default)."""
        if self._max_bytes is None:
            from infra.settings import get_settings

            self._max_bytes = get_settings().frame_cache_bytes
        return self._max_bytes

    @property
    def cached_bytes(self) -> int:
        """The estimated size of the frames held now."""
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def cached(self) -> list[tuple[str, int]]:
        """(dataset, version) of the frames held now, least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(
        self, session: Session, store: EncryptedStore, dataset_id: str, version: int | None = None
    ) -> LoadedFrame:
        """The published version (the latest when ``version`` is None), decrypted or from memory.

        Raises ``DatasetNotFound`` for an unknown or destroyed dataset or a version that is not
        published.
        """
        try:
            target = _target(session, dataset_id, version)
        except DatasetNotFound:
            # Destroyed, or the version is no longer published: its plaintext leaves memory now.
            with self._lock:
                for key in [k for k in self._entries if k[0] == dataset_id and version in (None, k[1])]:
                    del self._entries[key]
            raise
        key = (target.dataset_id, target.version)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.fingerprint == target.fingerprint:
                self._entries.move_to_end(key)
                return entry
            if entry is not None:
                del self._entries[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one decryption per version at a time; the others wait for it
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry.fingerprint == target.fingerprint:
                    self._entries.move_to_end(key)
                    return entry
            loaded = self._load(session, store, target)
            self._keep(key, loaded)
        return loaded

    def invalidate(self, dataset_id: str | None = None) -> None:
        """Drop the frames of a dataset (every frame when None)."""
        with self._lock:
            for key in [k for k in self._entries if dataset_id is None or k[0] == dataset_id]:
                del self._entries[key]

    def _load(self, session: Session, store: EncryptedStore, target: _Target) -> LoadedFrame:
        parts = []
        for name in target.objects:
            buffer = io.BytesIO()
            for segment in store.open_object(session, ObjectContext(target.dataset_id, target.version, name)):
                buffer.write(segment)
            buffer.seek(0)
            parts.append(pl.read_parquet(buffer))
            del buffer
        frame = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
        frame = _typed(frame, target.schema)
        self.loads += 1
        nbytes = int(frame.estimated_size())
        log.info("enclave.frame_decrypted", dataset=target.dataset_id, version=target.version, bytes=nbytes)
        return LoadedFrame(
            dataset_id=target.dataset_id,
            version=target.version,
            schema=target.schema,
            purpose=target.purpose,
            domain=target.domain,
            frame=frame,
            fingerprint=target.fingerprint,
            nbytes=nbytes,
        )

    def _keep(self, key: tuple[str, int], loaded: LoadedFrame) -> None:
        bound = self.max_bytes
        with self._lock:
            self._entries.pop(key, None)
            if loaded.nbytes > bound:
                return
            self._entries[key] = loaded
            total = sum(entry.nbytes for entry in self._entries.values())
            while total > bound:
                _, evicted = self._entries.popitem(last=False)
                total -= evicted.nbytes


@lru_cache(maxsize=2)
def _target_statement(latest: bool) -> Select[Any]:
    """The version (the newest published one, or ``:version``) with its dataset and live data keys.

    Built once: composing it costs more than running it.
    """
    dataset_id = bindparam("dataset_id", type_=String())
    wanted: Any = (
        select(func.max(DatasetVersion.version))
        .where(
            DatasetVersion.dataset_id == dataset_id,
            DatasetVersion.state == VersionState.published.value,
        )
        .scalar_subquery()
        if latest
        else bindparam("version", type_=Integer())
    )
    return (
        select(
            DatasetVersion.version,
            DatasetVersion.objects,
            DatasetVersion.schema,
            Dataset.purpose,
            Dataset.domain,
            DataKey.object_name,
            DataKey.id,
            DataKey.kek_version,
        )
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .outerjoin(
            DataKey,
            and_(
                DataKey.dataset_id == DatasetVersion.dataset_id,
                DataKey.dataset_version == DatasetVersion.version,
                DataKey.destroyed_at.is_(None),
            ),
        )
        .where(
            DatasetVersion.dataset_id == dataset_id,
            DatasetVersion.version == wanted,
            DatasetVersion.state == VersionState.published.value,
            Dataset.destroyed_at.is_(None),
        )
    )


def _target(session: Session, dataset_id: str, version: int | None) -> _Target:
    """What the answer must be, from the catalog: the version, its objects and their data keys."""
    params: dict[str, Any] = {"dataset_id": dataset_id}
    if version is not None:
        params["version"] = version
    query = _target_statement(version is None)
    rows = session.execute(query, params).all()
    if not rows:
        raise DatasetNotFound(dataset_id if version is None else f"{dataset_id} version {version}")
    number, objects, schema, purpose, domain = rows[0][:5]
    keys: dict[str, tuple[str, int | None]] = {row[5]: (row[6], row[7]) for row in rows if row[5] is not None}
    fingerprint: Fingerprint = tuple(
        (name, keys[name][0], keys[name][1]) if name in keys else (name, "", None) for name in objects
    )
    return _Target(
        dataset_id=dataset_id,
        version=number,
        schema=_schema(json.dumps(schema, sort_keys=True)),
        purpose=purpose,
        domain=domain,
        objects=tuple(objects),
        fingerprint=fingerprint,
    )


@lru_cache(maxsize=256)
def _schema(text: str) -> DatasetSchema:
    """A version's schema (validated once per distinct schema)."""
    return DatasetSchema.model_validate_json(text)


def _typed(frame: pl.DataFrame, schema: DatasetSchema) -> pl.DataFrame:
    wanted = {PSEUDONYM: pl.String(), **{v.name: polars_type(v) for v in schema.variables}}
    frame = frame.select(list(wanted))
    changes = {name: kind for name, kind in wanted.items() if frame.schema[name] != kind}
    return frame.cast(changes) if changes else frame  # type: ignore[arg-type]


frames = FrameCache()
"""The process's cache; its bound is ``ENCLAVE_FRAME_CACHE_BYTES`` (1 GiB by default)."""
