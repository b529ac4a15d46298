"""Synthetic LET'S CARE data: the project's shape, plausible relations, and rosters the product imports."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
from polars.testing import assert_frame_equal

from access.audit.actions import Role
from access.principal import Principal
from consent.identity import IdentityProtector
from consent.rosters.importing import import_students
from consent.rosters.importing_guardians import import_guardians
from consent.rosters.importing_teachers import import_teachers
from enclave.synthetic import generate, write_rosters
from tests.support.consent import load_rules
from tests.support.projects import make_principal


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    first, again, other = (
        generate(students=500, seed=7),
        generate(students=500, seed=7),
        generate(students=500, seed=8),
    )
    assert_frame_equal(first.questionnaire, again.questionnaire)
    assert_frame_equal(first.guardians, again.guardians)
    assert not first.questionnaire.equals(other.questionnaire)


def test_the_project_has_its_size():
    data = generate()
    students = data.students
    assert students.height == 18_000
    assert students["school"].n_unique() == 120
    assert students["country"].n_unique() == 6
    assert sorted(students["stage"].unique().to_list()) == [1, 2, 3, 4]
    assert data.teachers.height == 2_400
    per_student = data.guardians.group_by("student_ref").len()["len"]
    assert per_student.min() == 1
    assert per_student.max() == 2
    assert set(data.guardians.filter(pl.col("delivery") == "school")["email"].to_list()) == {""}


def test_relations_are_plausible():
    q = generate(seed=11).questionnaire
    by_ses = (
        q.group_by("ses_quintile").agg(pl.col("esl_risk").mean()).sort("ses_quintile")["esl_risk"].to_list()
    )
    assert by_ses == sorted(by_ses, reverse=True), "risk falls as socio-economic status rises"
    assert q.select(pl.corr("engagement", "attendance_pct")).item() > 0.2
    assert q.select(pl.corr("grade_average", "esl_risk")).item() < -0.2
    assert 0.05 < q["special_needs"].mean() < 0.11
    assert 0.04 < q["left_school_early"].mean() < 0.15, "near the EU's early-school-leaving rate"
    school_means = q.group_by("school").agg(pl.col("engagement").mean())["engagement"]
    assert school_means.std() > 0.15, "students of one school resemble each other (clustering)"


def test_the_rosters_import_into_the_product(db_session, components, tmp_path):
    protector = IdentityProtector(components.keys)
    load_rules(db_session)
    data = generate(students=300, schools=6, seed=3, year=2026)
    one_school = data.students.filter(pl.col("country") == "ES")["school"][0]
    students = data.students.filter(pl.col("school") == one_school)
    guardians = data.guardians.filter(pl.col("school") == one_school)
    teachers = data.teachers.filter(pl.col("school") == one_school)
    base = make_principal(db_session, Role.data_steward)
    steward = Principal(account_id=base.account_id, roles=base.roles, country="ES", schools=frozenset())
    imported = import_students(db_session, steward, protector, students.write_csv().encode())
    assert imported.created == students.height
    linked = import_guardians(db_session, steward, protector, guardians.write_csv().encode())
    assert linked.links_created == guardians.height
    assert (
        import_teachers(db_session, steward, protector, teachers.write_csv().encode()).created
        == teachers.height
    )
    paths = write_rosters(data, tmp_path, parquet=True)
    assert pl.read_parquet(paths["questionnaire"]).height == 300


def test_the_demo_data_command_writes_the_files(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "enclave", "demo-data", "--students", "200", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert pl.read_csv(tmp_path / "students.csv").height == 200
    assert {"engagement", "esl_risk"} <= set(pl.read_csv(tmp_path / "questionnaire.csv").columns)
