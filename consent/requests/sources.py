"""Where research data about a subject is held: the registry an access export asks.

The consent store does not know which datasets hold rows for a subject's pseudonyms; the enclave
does. A component that holds such rows implements :class:`SubjectDataSource` and registers it with
:func:`register_source` at import time (the same way withdrawal consumers register). The access
export then lists what every registered source reports, as counts per dataset, never the rows'
values (Art. 15(3) gives a copy of the data; the research rows are pseudonymised and are handed over
by the enclave on the DPO's instruction, not through this API).

With no source registered the export says so: ``"datasets": []`` and a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class DatasetRows:
    """How many rows one dataset holds for the subject's pseudonyms."""

    dataset: str
    rows: int


class SubjectDataSource(Protocol):
    """Something that holds data about subjects under their pseudonyms (e.g. the enclave's catalog)."""

    name: str
    """Stable name, shown in the export next to what the source reported."""

    def rows_for(self, session: Session, subject_id: str) -> list[DatasetRows]:
        """The datasets holding rows for this subject (by ``subject_id``), with a count each."""


_SOURCES: dict[str, SubjectDataSource] = {}


def register_source(source: SubjectDataSource) -> None:
    """Add a source; registering the same name again replaces it."""
    _SOURCES[source.name] = source


def unregister_source(name: str) -> None:
    """Remove a source (tests, or a component switched off)."""
    _SOURCES.pop(name, None)


def sources() -> list[SubjectDataSource]:
    """The registered sources, by name."""
    return [_SOURCES[name] for name in sorted(_SOURCES)]


def datasets_for(session: Session, subject_id: str) -> list[tuple[str, DatasetRows]]:
    """Every (source name, dataset rows) pair the registered sources report for the subject."""
    return [(source.name, found) for source in sources() for found in source.rows_for(session, subject_id)]
