"""Background sealing: chains queued ledger entries shortly after their transactions commit.

A request's transaction only inserts its entries into the queue table; chaining them (which needs
the single chain lock) is done by one thread per process and database, woken after each commit
that queued something. A pass tries the chain lock and reads the queue in one round trip. If
another process's sealer holds the lock and the queue is empty, that sealer has chained this
process's entries already and the pass is over. Otherwise it waits for the lock — blocking in
PostgreSQL, not polling, so a waiting sealer costs neither CPU nor transactions — lets the queue
fill for ``SETTLE_SECONDS``, and seals everything visible, so one pass chains the entries of many
requests and many processes. Requests never wait for the chain lock, and nothing stays unchained:
at exit the process seals what is left, and the periodic ``audit.seal`` job covers a process that
died in between.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

from sqlalchemy import Engine

from infra.logging import get_logger

log = get_logger(__name__)

ERROR_BACKOFF_SECONDS = 1.0
SETTLE_SECONDS = 0.02
"""How long a pass that had to wait for another sealer lets the queue fill before reading it.

Under a steady stream of commits from many processes this paces the passes at about fifty a
second, each chaining many entries; without it the sealers took the chain lock back to back, a
few entries each, and spent more CPU on sealing than the writers saved by not waiting. A quiet
ledger never waits for it: a pass that gets the lock at once seals right away.
"""


class Sealer:
    """One background sealing thread for one engine in one process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._owed = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Note that entries were queued and committed; they will be chained shortly."""
        with self._lock:
            self._owed += 1
        self._wake.set()

    @property
    def owed(self) -> int:
        """Commits whose entries may still wait to be chained."""
        with self._lock:
            return self._owed

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                taken = self._owed
            if taken <= 0:
                return
            try:
                self._pass()
            except Exception:
                log.exception("audit.seal_failed")
                time.sleep(ERROR_BACKOFF_SECONDS)
                continue
            self._settle(taken)

    def _pass(self) -> None:
        """One sealing transaction: chains everything committed before it started."""
        from access.audit.recording import seal_owed

        seal_owed(self.engine, settle=SETTLE_SECONDS)

    def _settle(self, taken: int) -> None:
        # A pass chains everything committed before it started, so what was owed when it started
        # is paid; a pass running at the same time on another thread may have paid it already.
        with self._lock:
            self._owed = max(0, self._owed - taken)

    def flush(self) -> None:
        """Chain everything owed now, waiting for the lock (before reading the ledger, and at exit)."""
        with self._lock:
            taken = self._owed
        if taken > 0:
            self._pass()
            self._settle(taken)


_SEALERS: dict[tuple[int, int], Sealer] = {}
_REGISTRY_LOCK = threading.Lock()


def sealer_for(engine: Engine) -> Sealer:
    """The sealer of this process for ``engine`` (created on first use, again after a fork)."""
    key = (os.getpid(), id(engine))
    sealer = _SEALERS.get(key)
    if sealer is None:
        with _REGISTRY_LOCK:
            sealer = _SEALERS.get(key)
            if sealer is None:
                sealer = _SEALERS[key] = Sealer(engine)
    return sealer


def flush_all() -> None:
    """Chain what this process still owes, for every engine (at exit, and for tests)."""
    pid = os.getpid()
    for (owner, _), sealer in list(_SEALERS.items()):
        if owner == pid:
            try:
                sealer.flush()
            except Exception:
                log.exception("audit.seal_at_exit_failed")


atexit.register(flush_all)
