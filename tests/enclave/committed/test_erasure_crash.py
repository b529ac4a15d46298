"""A worker killed in the middle of an erasure: the re-run completes it, nothing lost or half-erased.

The erasure runs as the worker runs it (``consent.decisions.withdrawals.deliver`` with the consumers
the task modules register) in a separate process, against a PostgreSQL database whose data is really
committed and the local object store. The child process stops at a chosen point (only this test's
child does: it wraps a function before delivering) and is killed with SIGKILL there; a second child
then runs the same delivery to the end.

Run as ``python -m tests.enclave.committed.test_erasure_crash <withdrawal id>`` it is that child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit.models import AuditEntry
from consent.decisions import pseudonyms
from consent.decisions.models import Withdrawal
from enclave.components import build_components
from enclave.datasets.erasure import CONSUMER_NAME
from enclave.datasets.ingestion import ingest
from enclave.datasets.models import DatasetVersion
from enclave.objects.models import DataKey
from enclave.objects.store import EncryptedStore, ObjectContext, ObjectDestroyed
from infra.settings import Settings, load_settings
from tests.enclave.test_erasure import old_enough, withdraw

DATASET = "questionnaire-wave1"
VERSIONS = 3
STOP_ENV = "ERASURE_TEST_STOP"
SIGNAL_ENV = "ERASURE_TEST_SIGNAL"


def run_child(
    settings: Settings, withdrawal_id: int, tmp_path: Path, stop: str | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENCLAVE_ENVIRONMENT": "test",
        "ENCLAVE_DATA_DIR": str(settings.data_dir),
        "ENCLAVE_DATABASE_URL": settings.effective_database_url,
        "ENCLAVE_LOG_LEVEL": "INFO",
        "ENCLAVE_LOG_JSON": "false",
        SIGNAL_ENV: str(tmp_path / "stopped"),
    }
    env.pop(STOP_ENV, None)
    if stop is not None:
        env[STOP_ENV] = stop
    log = (tmp_path / "child.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.enclave.committed.test_erasure_crash", str(withdrawal_id)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def read_all(session: Session, store: EncryptedStore) -> dict[int, pl.DataFrame]:
    """Every published version, decrypted object by object (an unreadable one fails the test)."""
    out = {}
    for version in session.execute(select(DatasetVersion).order_by(DatasetVersion.version)).scalars():
        parts = [
            pl.read_parquet(store.read_object(session, ObjectContext(DATASET, version.version, name)))
            for name in version.objects
        ]
        out[version.version] = pl.concat(parts)
    return out


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param("after-first-commit", id="killed-after-a-version-committed-before-its-old-bytes-went"),
        pytest.param("inside-second-version", id="killed-with-a-version-half-rewritten"),
    ],
)
def test_a_killed_erasure_is_completed_by_the_rerun(
    stop: str, tmp_path: Path, settings: Settings, db_session: Session, world: dict[str, Any]
) -> None:
    store: EncryptedStore = world["store"]
    for _ in range(VERSIONS):
        ingest(
            db_session,
            world["steward"],
            store,
            world["protector"],
            dataset_id=DATASET,
            data=world["upload"].write_csv().encode(),
        )
    subject = old_enough(db_session, world)
    pseudonym = pseudonyms.pseudonymise(db_session, store.keys, "letscare-main", [subject])[subject]
    withdraw(db_session, world, subject, ["questionnaires"])
    # The event is stored but its job not sent (as with a broker down): the children deliver it.
    db_session.info.pop("outbox_pending", None)
    db_session.commit()
    withdrawal = db_session.execute(select(Withdrawal).where(Withdrawal.subject_id == subject)).scalar_one()
    before = read_all(db_session, store)
    assert all(pseudonym in frame["pseudonym"].to_list() for frame in before.values())
    original = {
        v: list(o) for v, o in db_session.execute(select(DatasetVersion.version, DatasetVersion.objects))
    }

    child = run_child(settings, withdrawal.id, tmp_path, stop)
    deadline = time.monotonic() + 180
    while not (tmp_path / "stopped").exists():
        assert child.poll() is None, (tmp_path / "child.log").read_text()
        assert time.monotonic() < deadline, "the child never reached the stop point"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL

    # Killed: every version still reads; the first is rewritten and shredded, the others untouched.
    db_session.expire_all()
    halfway = read_all(db_session, store)
    assert pseudonym not in halfway[1]["pseudonym"].to_list()
    assert halfway[1].height == before[1].height - 1
    for number in range(2, VERSIONS + 1):
        assert halfway[number].equals(before[number]), f"version {number} was left as it was"
    with pytest.raises(ObjectDestroyed):
        store.read_object(db_session, ObjectContext(DATASET, 1, original[1][0]))
    assert CONSUMER_NAME not in db_session.get(Withdrawal, withdrawal.id).handled
    db_session.commit()

    rerun = run_child(settings, withdrawal.id, tmp_path)
    assert rerun.wait(timeout=300) == 0, (tmp_path / "child.log").read_text()

    db_session.expire_all()
    assert CONSUMER_NAME in db_session.get(Withdrawal, withdrawal.id).handled
    after = read_all(db_session, store)
    assert sorted(after) == list(range(1, VERSIONS + 1)), "no version lost"
    for number, frame in after.items():
        assert pseudonym not in frame["pseudonym"].to_list()
        assert frame.height == before[number].height - 1
        assert frame.sort("pseudonym").equals(
            before[number].filter(pl.col("pseudonym") != pseudonym).sort("pseudonym")
        ), "nothing but the subject's row left"
    versions = {v.version: v for v in db_session.execute(select(DatasetVersion)).scalars()}
    assert {n: v.objects for n, v in versions.items()} == {
        n: ["part-0000.e1.parquet"] for n in range(1, VERSIONS + 1)
    }, "each version rewritten exactly once"
    proofs = db_session.execute(
        select(AuditEntry).where(
            AuditEntry.action == "enclave.subject_rows_erased", AuditEntry.target_id == withdrawal.event_id
        )
    ).scalars()
    assert sorted(p.details["version"] for p in proofs) == list(range(1, VERSIONS + 1))
    # The old objects' data keys are gone, and the store holds exactly the live objects: no bytes
    # left from the killed run, nothing unreadable, and no object holding the subject.
    keys = list(db_session.execute(select(DataKey)).scalars())
    old = [k for k in keys if k.object_name == "part-0000.parquet"]
    assert len(old) == VERSIONS
    assert all(k.destroyed_at is not None and k.wrapped_key == "" and k.kek_version is None for k in old)
    live = {k.storage_key for k in keys if k.destroyed_at is None}
    stored = {info.key for info in store.storage.list("datasets/")}
    assert stored == live
    for key in sorted(stored):
        _, _, version, name = key.split("/")
        plain = store.read_object(db_session, ObjectContext(DATASET, int(version.removeprefix("v")), name))
        assert pseudonym not in pl.read_parquet(plain)["pseudonym"].to_list()


def _stop_here() -> None:
    Path(os.environ[SIGNAL_ENV]).write_text("stopped")
    while True:
        time.sleep(1)


def _child(withdrawal_id: int) -> None:
    from consent.decisions.withdrawals import deliver
    from infra.storage.local import LocalStorage

    settings = load_settings()
    components = build_components(settings)
    stop = os.environ.get(STOP_ENV)
    if stop == "after-first-commit":
        # The first version's transaction has committed; its old bytes are about to be deleted.
        LocalStorage.delete = lambda self, key: _stop_here()  # type: ignore[method-assign]
    elif stop == "inside-second-version":
        put = EncryptedStore.put_object
        calls = []

        def put_then_stop(self: EncryptedStore, *args: Any, **kwargs: Any) -> Any:
            stored = put(self, *args, **kwargs)
            calls.append(stored)
            if len(calls) == 2:  # the second version's new object is stored, its transaction open
                _stop_here()
            return stored

        EncryptedStore.put_object = put_then_stop  # type: ignore[method-assign]
    print("confirmed:", deliver(components.session_factory, withdrawal_id), flush=True)


if __name__ == "__main__":
    _child(int(sys.argv[1]))
