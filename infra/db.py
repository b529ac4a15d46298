"""Database engine, declarative base with a naming convention, and session handling.

One session per unit of work: :func:`session_scope` commits on success and rolls back on error;
services only ``flush()``. Works on SQLite (embedded default) and PostgreSQL.
"""

from __future__ import annotations

import select as select_module
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import Engine, MetaData, String, any_, bindparam, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from infra.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def in_values(session: Session, column: Any, values: Sequence[str]) -> Any:
    """``column IN values``; on PostgreSQL as one text parameter split by the server.

    Thousands of bind parameters cost psycopg seconds to convert; one comma-joined string does
    not. Values must not contain commas (ids, hashes).
    """
    if session.get_bind().dialect.name == "postgresql" and not any("," in value for value in values):
        listed = func.string_to_array(bindparam(None, ",".join(values), type_=String()), ",")
        return column.in_(select(func.unnest(listed)).scalar_subquery())
    return column.in_(list(values))


def any_of(session: Session, column: Any, values: Sequence[str]) -> Any:
    """``column IN values``; on PostgreSQL as ``column = ANY(array)`` from one text parameter.

    Like ``in_values``, but the planner knows how many values there are and probes an index with
    them in order: the form for tens of thousands of values against a table of millions. Values
    must not contain commas (ids, hashes).
    """
    if session.get_bind().dialect.name == "postgresql" and not any("," in value for value in values):
        listed = func.string_to_array(bindparam(None, ",".join(values), type_=String()), ",")
        return column == any_(listed)
    return column.in_(list(values))


SQLITE_VALUES = 30_000
"""Values per ``any_of`` statement on SQLite (it allows 32,766 parameters in one statement)."""


def value_parts(session: Session, values: Sequence[str]) -> Iterator[Sequence[str]]:
    """``values`` in the parts one ``any_of`` statement takes: all at once on PostgreSQL (one text
    parameter, any number), ``SQLITE_VALUES`` at a time elsewhere."""
    size = (len(values) or 1) if is_postgresql(session) else SQLITE_VALUES
    for start in range(0, len(values), size):
        yield values[start : start + size]


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime: SQLite hands back naive ones for timezone-aware columns (in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every table; the shared metadata carries the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Create an engine for SQLite or PostgreSQL with sensible defaults for each."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if make_url(url).get_driver_name() != "psycopg":
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
    event.listen(engine, "checkout", _refuse_closed_connection)
    return engine


_LIVENESS_READS = 4


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Discard a pooled PostgreSQL connection the server has closed, without a round trip.

    An idle connection has nothing to read unless the server has spoken: a restart, an
    administrator's ``pg_terminate_backend`` or an idle timeout sends a FATAL notice and closes
    the socket. Reading what is there finds the close, and the pool then opens a fresh
    connection (``DisconnectionError`` makes it retry). This replaces ``pool_pre_ping``, whose
    ``SELECT 1`` cost every checkout a round trip, about a tenth of a one-row transaction. A
    connection cut without a word (a silent network partition) is found by its next statement, as
    it would have been by the ping, and SQLAlchemy then renews the pool.
    """
    pgconn = dbapi_connection.pgconn
    try:
        # poll, not select: select refuses descriptors above 1023, which a busy process reaches.
        poller = select_module.poll()
        poller.register(pgconn.socket, select_module.POLLIN)
        for _ in range(_LIVENESS_READS):
            if not poller.poll(0):
                break
            pgconn.consume_input()
        alive = pgconn.status == pq.ConnStatus.OK
    except (OSError, psycopg.Error):
        alive = False
    if not alive:
        raise DisconnectionError("the database server closed this pooled connection")


def engine_from_settings(settings: Settings) -> Engine:
    """The engine described by the settings."""
    return make_engine(settings.effective_database_url, pool_size=settings.database_pool_size)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory that keeps objects usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def is_postgresql(bind: Engine | Session | Any) -> bool:
    """True when the engine, connection or session talks to PostgreSQL."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return bool(dialect.name == "postgresql")
