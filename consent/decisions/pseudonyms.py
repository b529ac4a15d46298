"""Keyed pseudonyms of subjects, one namespace per project domain.

A pseudonym is the hex HMAC-SHA256 of the subject id under the key ``pseudonym-<domain>`` held by the
key-management backend, so research data carries only pseudonyms and nobody holding the data alone
can link them back. The mapping is kept here, on the identity side, so the status engine can answer
for a dataset's pseudonyms; the enclave's ingestion calls ``pseudonymise``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from consent.decisions.models import Pseudonym
from infra.db import any_of, in_values, value_parts
from infra.keys import KeyBackend

CHUNK = 30_000
"""Values per look-up (SQLite allows 32,766 parameters in one statement)."""


def key_name(domain: str) -> str:
    """The key-management key of a domain."""
    return f"pseudonym-{domain}"


def pseudonymise(
    session: Session, keys: KeyBackend, domain: str, subject_ids: Iterable[str]
) -> dict[str, str]:
    """Pseudonyms of the subjects in ``domain`` (subject id -> pseudonym), created and stored as needed."""
    wanted = list(dict.fromkeys(subject_ids))
    known: dict[str, str] = {}
    for part in value_parts(session, wanted):
        rows = session.execute(
            select(Pseudonym.subject_id, Pseudonym.pseudonym).where(
                Pseudonym.domain == domain, any_of(session, Pseudonym.subject_id, part)
            )
        ).all()
        known.update(rows)
    return {**known, **create(session, keys, domain, [s for s in wanted if s not in known])}


def create(session: Session, keys: KeyBackend, domain: str, subject_ids: Sequence[str]) -> dict[str, str]:
    """Pseudonyms of subjects that have none yet in ``domain``, computed and stored (id -> pseudonym).

    A subject that already has one makes the insert fail on the unique constraint.
    """
    fresh = compute(keys, domain, subject_ids)
    store(session, domain, fresh)
    return fresh


def compute(keys: KeyBackend, domain: str, subject_ids: Sequence[str]) -> dict[str, str]:
    """The pseudonyms of these subjects in ``domain`` (id -> pseudonym), neither read nor stored."""
    if not subject_ids:
        return {}
    digests = keys.hmac_many(key_name(domain), [s.encode() for s in subject_ids])
    return {s: digest.hex() for s, digest in zip(subject_ids, digests, strict=True)}


def store(session: Session, domain: str, fresh: dict[str, str]) -> None:
    """Store new pseudonyms (from ``compute``) of subjects that have none yet in ``domain``."""
    if not fresh:
        return
    if session.get_bind().dialect.name == "postgresql":
        # One statement whatever the number: the two lists travel as two text parameters. In the
        # order of the subject ids, so that the unique index is filled page after page rather
        # than at random (an ingestion of millions inserts 100,000 at a time).
        subjects = sorted(fresh)
        session.execute(
            text(
                "INSERT INTO consent_pseudonym (domain, pseudonym, subject_id) SELECT :domain, p, s "
                "FROM unnest(string_to_array(:p, ','), string_to_array(:s, ',')) AS t(p, s)"
            ),
            {"domain": domain, "p": ",".join([fresh[s] for s in subjects]), "s": ",".join(subjects)},
        )
        return
    session.execute(
        insert(Pseudonym),
        [{"domain": domain, "pseudonym": p, "subject_id": s} for s, p in fresh.items()],
    )


def resolve(session: Session, domain: str, pseudonyms: Sequence[str]) -> dict[str, str]:
    """Subject ids of known pseudonyms in ``domain`` (pseudonym -> subject id); unknown ones are absent."""
    found: dict[str, str] = {}
    for start in range(0, len(pseudonyms), CHUNK):
        part = list(pseudonyms[start : start + CHUNK])
        rows = session.execute(
            select(Pseudonym.pseudonym, Pseudonym.subject_id).where(
                Pseudonym.domain == domain, in_values(session, Pseudonym.pseudonym, part)
            )
        ).all()
        found.update(rows)
    return found
