"""Rotation of the key-encryption key: rotate, rewrap every live data key, retire old versions.

Rewrapping asks the key backend to move a wrapped data key to the newest KEK version (in transit
the data key never leaves the server); the objects themselves are not touched. Rewrap works in
batches, each committed on its own, and picks only keys below the newest version, so it can be
killed at any moment and run again: it continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access.audit.actions import Details, register_action
from access.audit.recording import Actor, record
from enclave.objects.envelope import Binding
from enclave.objects.models import DataKey
from enclave.objects.store import EncryptedStore
from infra.errors import ReasonedConflict
from infra.keys import UnwrapFailed, WrappedKey
from infra.logging import get_logger

log = get_logger(__name__)


class KekRotatedDetails(Details):
    """A new version of the key-encryption key of stored objects."""

    kek_version: int


class KeysRewrappedDetails(Details):
    """Data keys moved to a KEK version, without touching the objects."""

    kek_version: int
    rewrapped: int
    remaining: int


class KekRetiredDetails(Details):
    """KEK versions below ``below`` no longer unwrap anything."""

    below: int


KEK_ROTATED = register_action("enclave.kek_rotated", KekRotatedDetails)
KEYS_REWRAPPED = register_action("enclave.data_keys_rewrapped", KeysRewrappedDetails)
KEK_RETIRED = register_action("enclave.kek_retired", KekRetiredDetails)


class OldKeysStillLive(ReasonedConflict):
    """Retiring a KEK version was refused: live data keys are still wrapped by an older version."""

    type_slug = "old-keys-live"
    title = "Data keys still use the version to retire"


@dataclass(frozen=True)
class RewrapReport:
    """What a rewrap did: the target version, keys moved, keys that did not open, keys still below it."""

    version: int
    rewrapped: int
    remaining: int
    failed: int = 0


def version_counts(session: Session) -> dict[int, int]:
    """Live data keys per KEK version."""
    rows = session.execute(
        select(DataKey.kek_version, func.count())
        .where(DataKey.destroyed_at.is_(None))
        .group_by(DataKey.kek_version)
        .order_by(DataKey.kek_version)
    ).all()
    return {int(version): int(count) for version, count in rows if version is not None}


def _below(session: Session, version: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(DataKey)
            .where(DataKey.destroyed_at.is_(None), DataKey.kek_version < version)
        )
        or 0
    )


@contextmanager
def _unit(store: EncryptedStore) -> Iterator[Session]:
    """One batch's transaction: committed on its own with a factory, flushed into a given session."""
    sessions = store.sessions
    if sessions is None:
        raise ValueError("this store was built without sessions; key rotation needs them")
    if isinstance(sessions, Session):
        yield sessions
        sessions.flush()
        return
    with sessions() as session, session.begin():
        yield session


def rotate(store: EncryptedStore, actor: Actor | None = None) -> int:
    """Add a new version of the key-encryption key; new objects are wrapped by it. Returns it."""
    version = store.keys.rotate(store.kek_name)
    with _unit(store) as session:
        record(
            session,
            actor or Actor.system(),
            KEK_ROTATED,
            target_type="key",
            target_id=store.kek_name,
            details=KekRotatedDetails(kek_version=version),
        )
    log.info("enclave.kek_rotated", kek_version=version)
    return version


def pending(store: EncryptedStore) -> tuple[int, int]:
    """The newest KEK version and how many live data keys are still below it."""
    latest = store.keys.latest_version(store.kek_name)
    with _unit(store) as session:
        return latest, _below(session, latest)


def rewrap_all(
    store: EncryptedStore,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    actor: Actor | None = None,
) -> RewrapReport:
    """Rewrap every live data key below the newest KEK version, ``batch_size`` keys per transaction.

    ``progress`` is called with the number of keys handled by each batch. Rows locked by another
    rewrap are skipped (and picked up by a later run), so two runs at once do not collide. A wrapped
    key that does not open (altered, or from another key store) is left as it is and counted in
    ``failed``: it keeps the old version live, so ``retire`` stays refused until it is dealt with.
    """
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    latest = store.keys.latest_version(store.kek_name)
    moved = failed = 0
    after = ""
    while True:
        with _unit(store) as session:
            rows = (
                session.execute(
                    select(DataKey)
                    .where(
                        DataKey.destroyed_at.is_(None),
                        DataKey.kek_version < latest,
                        DataKey.id > after,
                    )
                    .order_by(DataKey.id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            if not rows:
                break
            now = datetime.now(UTC)
            batch_moved = 0
            for row in rows:
                context = Binding(row.dataset_id, row.dataset_version, row.object_name).encode()
                try:
                    fresh = store.keys.rewrap(store.kek_name, WrappedKey(row.wrapped_key), context)
                except UnwrapFailed:
                    failed += 1
                    log.warning("enclave.data_key_rewrap_failed", data_key_id=row.id)
                    continue
                row.wrapped_key = fresh.token
                row.kek_version = fresh.version
                row.rewrapped_at = now
                batch_moved += 1
            after = rows[-1].id
        moved += batch_moved
        if progress is not None:
            progress(len(rows))
    with _unit(store) as session:
        remaining = _below(session, latest)
        if moved:
            record(
                session,
                actor or Actor.system(),
                KEYS_REWRAPPED,
                target_type="key",
                target_id=store.kek_name,
                details=KeysRewrappedDetails(kek_version=latest, rewrapped=moved, remaining=remaining),
            )
    log.info(
        "enclave.data_keys_rewrapped", kek_version=latest, rewrapped=moved, failed=failed, remaining=remaining
    )
    return RewrapReport(version=latest, rewrapped=moved, remaining=remaining, failed=failed)


def retire(store: EncryptedStore, below: int, actor: Actor | None = None) -> None:
    """Retire KEK versions older than ``below``; refused while a live data key still uses one."""
    with _unit(store) as session:
        left = _below(session, below)
        counts = version_counts(session)
    if left:
        old = ", ".join(f"v{version}: {count}" for version, count in counts.items() if version < below)
        raise OldKeysStillLive(
            f"{left} live data keys are still wrapped by versions older than {below} ({old}); "
            "run `enclave keys rewrap` first",
            code="old_keys_live",
        )
    store.keys.retire(store.kek_name, below)
    with _unit(store) as session:
        record(
            session,
            actor or Actor.system(),
            KEK_RETIRED,
            target_type="key",
            target_id=store.kek_name,
            details=KekRetiredDetails(below=below),
        )
    log.info("enclave.kek_retired", below=below)
