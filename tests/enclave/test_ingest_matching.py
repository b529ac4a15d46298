"""Matching an upload to the roster: per batch or the whole country at once, with the same answer."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from sqlalchemy import delete, select

from consent.decisions import matching, pseudonyms
from consent.decisions.models import StatusCache
from consent.decisions.status import student_statuses
from consent.identity import IdentityField
from consent.rosters.models import Student
from enclave.datasets import ingestion
from enclave.datasets.ingestion import load_version
from tests.enclave.test_ingest_stream import broken_upload, stream

DATASET = "questionnaire-wave1"


def _ingest(db_session, world, data: bytes, lookup: str):
    return stream(db_session, world, data, quarantine=True, lookup=lookup)


def test_matching_per_batch_and_the_whole_roster_at_once_store_the_same_rows(db_session, world):
    broken = broken_upload(world)
    data = broken.write_csv().encode()
    by_batch = _ingest(db_session, world, data, "batch")
    by_country = _ingest(db_session, world, data, "country")
    assert by_batch.quarantined == by_country.quarantined == 3
    assert by_batch.rows_stored == by_country.rows_stored > 0
    assert by_batch.excluded_without_consent == by_country.excluded_without_consent > 0
    assert by_batch.rows_stored + by_batch.excluded_without_consent + 3 == broken.height
    first = load_version(db_session, world["store"], DATASET, by_batch.version)
    second = load_version(db_session, world["store"], DATASET, by_country.version)
    assert first.sort("pseudonym").equals(second.sort("pseudonym"))
    expected = pseudonyms.pseudonymise(db_session, world["store"].keys, "letscare-main", world["granted"])
    assert set(first["pseudonym"]) < set(expected.values())


def test_an_upload_holding_most_of_the_roster_matches_it_whole_and_a_small_one_probes(
    db_session, world, monkeypatch
):
    asked: list[bool] = []
    original = matching.match_students

    def spy(*args, **kwargs):
        asked.append(kwargs["ref_indexes"] is None)
        return original(*args, **kwargs)

    monkeypatch.setattr(ingestion.matching, "match_students", spy)
    upload: pl.DataFrame = world["upload"]
    _ingest(db_session, world, upload.write_csv().encode(), "auto")
    assert asked == [True], "the whole school's file: the roster is read once"
    asked.clear()
    # Forty more students of the country on the roster for every one in the file: probed batch by batch.
    more = db_session.execute(select(Student).where(Student.country_code == "ES").limit(1)).scalar_one()
    db_session.add_all(
        Student(
            subject_id=f"00000000-0000-4000-8000-{number:012d}",
            ref_index=f"{number:064x}",
            ref_ciphertext=more.ref_ciphertext,
            country_code="ES",
            school_code="ES-OTHER",
            stage=more.stage,
            class_name=more.class_name,
            language=more.language,
            birth_year=more.birth_year,
            birth_month=more.birth_month,
        )
        for number in range(40 * 3)
    )
    db_session.flush()
    _ingest(db_session, world, upload.head(3).write_csv().encode(), "auto")
    assert asked
    assert not any(asked)


@pytest.mark.parametrize("whole", [True, False])
def test_a_match_gives_the_status_engines_answer_with_or_without_cache_rows(db_session, world, whole):
    students = db_session.execute(select(Student).where(Student.country_code == "ES")).scalars().all()
    # Half the students lose their cache row: their status is derived from the decisions.
    db_session.execute(delete(StatusCache).where(StatusCache.student_id.in_([s.id for s in students[::2]])))
    erased = students[1]
    erased.erased_at = datetime.now(UTC)
    db_session.flush()
    now = datetime.now(UTC)
    known = pseudonyms.pseudonymise(db_session, world["store"].keys, "letscare-main", world["granted"][:3])
    protector = world["protector"]
    indexes = None
    if not whole:
        blind = protector.blind_indexer(db_session, IdentityField.student_ref)
        indexes = [s.ref_index for s in students[:10]] + blind(["ES/nowhere/nobody"])
    found = matching.match_students(
        db_session, country="ES", purpose="questionnaires", domain="letscare-main", at=now,
        ref_indexes=indexes,
    )  # fmt: skip
    asked = students if whole else students[:10]
    expected = student_statuses(db_session, [s.subject_id for s in asked if s.erased_at is None], at=now)
    assert set(found["subject_id"]) == set(expected.rows), "erased and unknown students are not matched"
    assert set(found.filter(pl.col("granted"))["subject_id"]) == expected.consenting("questionnaires")
    with_pseudonym = dict(found.drop_nulls("pseudonym").select("subject_id", "pseudonym").iter_rows())
    assert with_pseudonym == {s: p for s, p in known.items() if s in expected.rows}
