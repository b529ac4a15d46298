"""New pseudonyms are committed on a connection of their own during a large ingestion (PostgreSQL)."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import func, select

from consent.decisions import pseudonyms
from consent.decisions.models import Pseudonym
from enclave.datasets.ingestion import UploadRejected, load_version
from enclave.datasets.models import DatasetVersion
from tests.enclave.test_ingest_stream import stream

DATASET = "questionnaire-wave1"


def _stored(committed) -> int:
    with committed.engine.connect() as connection:
        return connection.execute(
            select(func.count()).select_from(Pseudonym).where(Pseudonym.domain == "letscare-main")
        ).scalar_one()


def test_a_refused_upload_publishes_nothing_and_its_retry_reuses_the_pseudonyms_already_committed(
    db_session, world, committed
):
    db_session.commit()
    upload: pl.DataFrame = world["upload"].with_columns(pl.all().cast(pl.String))
    # The last row is wrong: the batches before it are matched and their new pseudonyms stored.
    last = pl.int_range(pl.len()) == pl.len() - 1
    broken = upload.with_columns(pl.when(last).then(pl.lit("robot")).otherwise("gender").alias("gender"))
    with pytest.raises(UploadRejected):
        stream(db_session, world, broken.write_csv().encode())
    db_session.commit()
    early = _stored(committed)
    assert 0 < early < len(world["granted"]), "pseudonyms of the batches before the bad row are kept"
    assert db_session.execute(select(func.count()).select_from(DatasetVersion)).scalar_one() == 0

    report = stream(db_session, world, upload.write_csv().encode())
    db_session.commit()
    assert report.rows_stored == len(world["granted"])
    assert _stored(committed) == len(world["granted"]), "one pseudonym per stored subject, none twice"
    expected = pseudonyms.pseudonymise(db_session, world["store"].keys, "letscare-main", world["granted"])
    stored = load_version(db_session, world["store"], DATASET)
    assert sorted(stored["pseudonym"]) == sorted(expected.values())
