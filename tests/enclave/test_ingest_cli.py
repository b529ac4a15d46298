"""``enclave datasets ingest``: a file from disk as a steward, with a report; refusals name the rows."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import enclave.cli
from access.audit.actions import Role
from enclave.datasets.ingestion import load_version
from enclave.datasets.models import DatasetVersion

DATASET = "questionnaire-wave1"


@pytest.fixture
def cli(world, monkeypatch):
    """The command line on the test's database and stores."""
    components = world["components"]
    monkeypatch.setattr(enclave.cli, "_settings", lambda: components.settings)
    monkeypatch.setattr(enclave.cli, "_components", lambda settings: components)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(enclave.cli.app, ["datasets", "ingest", *args])

    return invoke


def test_a_steward_ingests_a_file_from_disk_and_sees_the_counts(
    cli, world, db_session, staff_factory, tmp_path
):
    steward = staff_factory(roles=[Role.data_steward], country="ES")
    path = tmp_path / "wave1.csv"
    world["upload"].write_csv(path)
    result = cli(DATASET, str(path), "--as", steward.email.upper())
    assert result.exit_code == 0, result.output
    assert "version 1 published" in result.output
    assert f"{len(world['granted'])}" in result.output
    assert "no consent" in result.output
    frame = load_version(db_session, world["store"], DATASET)
    assert frame.height == len(world["granted"])
    version = db_session.execute(select(DatasetVersion)).scalar_one()
    assert version.created_by == steward.account_id


def test_parquet_and_quarantine_from_the_command_line(cli, world, db_session, staff_factory, tmp_path):
    steward = staff_factory(roles=[Role.data_steward], country="ES")
    path = tmp_path / "wave1.parquet"
    upload = world["upload"].with_columns(pl.all().cast(pl.String))
    upload.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("robot")).otherwise("gender").alias("gender")
    ).write_parquet(path)
    result = cli(DATASET, str(path), "--as", steward.account_id, "--quarantine")
    assert result.exit_code == 0, result.output
    assert "quarantined" in result.output
    version = db_session.execute(select(DatasetVersion)).scalar_one()
    assert version.quarantined == 1


def test_a_bad_file_is_refused_with_its_rows_and_nothing_is_stored(
    cli, world, db_session, staff_factory, tmp_path
):
    steward = staff_factory(roles=[Role.data_steward], country="ES")
    path = tmp_path / "wave1.csv"
    path.write_bytes(world["upload"].write_csv().encode().replace(b",female,", b",robot,", 1))
    result = cli(DATASET, str(path), "--as", steward.email)
    assert result.exit_code == 1
    assert "gender" in result.output
    assert "categories" in result.output
    assert db_session.execute(select(DatasetVersion)).first() is None


def test_only_a_data_steward_of_a_country_may_be_named(cli, world, staff_factory, tmp_path):
    path = tmp_path / "wave1.csv"
    world["upload"].write_csv(path)
    researcher = staff_factory(roles=[Role.researcher])
    result = cli(DATASET, str(path), "--as", researcher.email)
    assert result.exit_code == 2
    assert "not a data steward" in result.output
    assert cli(DATASET, str(path), "--as", "nobody@example.org").exit_code == 2
    assert cli(DATASET, str(tmp_path / "missing.csv"), "--as", researcher.email).exit_code == 2
