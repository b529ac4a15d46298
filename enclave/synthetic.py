"""Synthetic LET'S CARE data: rosters and a questionnaire dataset that look like the real project.

Nobody real is in it. The generator is seeded (same seed, same data) and vectorised, so the project's
size (6 countries, 120 schools, 4 stages, 18,000 students, 2,400 teachers) takes well under a second
and 2,000,000 students for benchmarks a few seconds.

What it models, plausibly rather than exactly:

* **Schools** are spread evenly over the countries; each has a random *climate* effect shared by its
  students (school-level clustering) and serves all four stages (ages about 8, 11, 14 and 16).
* **Students**: gender, age from their stage, a socio-economic quintile that differs between
  schools, a migrant background more likely in low quintiles, special educational needs (Art. 9),
  then scores on a 1-5 scale — engagement, relationship with teachers, belonging — that depend on
  quintile, needs and the school's climate; attendance (percent of days) and a grade average
  (0-10) that follow engagement; and an **early-school-leaving risk** from a logistic model of
  them, rising with age, low SES, low engagement, poor attendance, low grades and weak belonging.
* **Guardians**: one or two per student, some reached only through the school (no email).
* **Teachers**: 20 per school.

Outputs are Polars data frames; ``write_rosters`` writes the three roster CSV files in the formats of
``consent/rosters/csv_format.py`` and the questionnaire as CSV or Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

COUNTRIES = {
    "BE": ("nl", "fr"),
    "BG": ("bg",),
    "ES": ("es",),
    "PL": ("pl",),
    "PT": ("pt",),
    "IT": ("it",),
}
"""Six countries: the four LET'S CARE partner countries with shipped rules, and two stand-ins."""
STAGE_AGES = {1: 8, 2: 11, 3: 14, 4: 16}
MOTHERS = ["Maria", "Elena", "Ana", "Sofia", "Joana", "Nadia", "Agnieszka", "Lotte", "Giulia", "Desislava"]
FATHERS = ["Ivan", "Jan", "Lucas", "Marco", "Piotr", "Omar", "Javier", "Pieter", "Luca", "Georgi"]
LAST_NAMES = ["Ivanova", "Garcia", "Kowalski", "Peeters", "Rossi", "Silva", "Dimitrov", "Nowak", "Janssens"]


@dataclass(frozen=True)
class SyntheticData:
    """The generated frames; ``questionnaire`` shares ``student_ref`` and ``school`` with ``students``."""

    students: pl.DataFrame
    guardians: pl.DataFrame
    teachers: pl.DataFrame
    questionnaire: pl.DataFrame


def _schools(rng: np.random.Generator, count: int) -> pl.DataFrame:
    countries = list(COUNTRIES)
    country = [countries[i % len(countries)] for i in range(count)]
    number = [i // len(countries) + 1 for i in range(count)]
    return pl.DataFrame(
        {
            "school": [f"{c}-S{n:03d}" for c, n in zip(country, number, strict=True)],
            "country": country,
            "climate": rng.normal(0.0, 0.35, count),
            "ses_shift": rng.normal(0.0, 0.8, count),
        }
    )


def _clip(values: np.ndarray, low: float, high: float) -> np.ndarray:
    clipped: np.ndarray = np.clip(values, low, high)
    return clipped


def generate(
    *,
    students: int = 18_000,
    schools: int = 120,
    teachers_per_school: int = 20,
    seed: int = 2026,
    year: int | None = None,
) -> SyntheticData:
    """The synthetic project in ``year`` (default: this year; birth years are relative to it)."""
    year = year or datetime.now(UTC).year
    if students < 1 or schools < 1:
        raise ValueError("students and schools must be positive")
    rng = np.random.default_rng(seed)
    school_frame = _schools(rng, schools)
    school_index = rng.integers(0, schools, students)
    climate = school_frame["climate"].to_numpy()[school_index]
    ses_shift = school_frame["ses_shift"].to_numpy()[school_index]
    stage = rng.integers(1, 5, students)
    age = np.array([0, *STAGE_AGES.values()])[stage] + rng.integers(0, 2, students)
    birth_month = rng.integers(1, 13, students)
    gender = rng.choice(3, students, p=[0.49, 0.49, 0.02])
    ses = _clip(np.round(3 + ses_shift + rng.normal(0, 1.1, students)), 1, 5).astype(int)
    migrant = rng.random(students) < (0.28 - 0.04 * ses)
    special_needs = rng.random(students) < 0.08
    engagement = _clip(
        3.2 + 0.25 * (ses - 3) - 0.4 * special_needs + climate + rng.normal(0, 0.7, students), 1, 5
    )
    relationship = _clip(3.4 + 0.6 * climate + 0.2 * (engagement - 3) + rng.normal(0, 0.6, students), 1, 5)
    belonging = _clip(3.3 - 0.3 * migrant + 0.4 * (relationship - 3) + rng.normal(0, 0.6, students), 1, 5)
    attendance = _clip(
        93 + 2.5 * (engagement - 3) - 1.5 * (age - 11) / 5 + rng.normal(0, 4, students), 40, 100
    )
    grades = _clip(
        6.2
        + 0.5 * (ses - 3)
        + 0.6 * (engagement - 3)
        + 0.04 * (attendance - 90)
        + rng.normal(0, 1, students),
        0,
        10,
    )
    logit = (
        -2.4
        + 0.25 * (age - 14)
        - 0.35 * (ses - 3)
        - 0.6 * (engagement - 3)
        - 0.08 * (attendance - 90)
        - 0.3 * (grades - 6)
        - 0.4 * (belonging - 3)
        + 0.3 * special_needs
    )
    risk = 1 / (1 + np.exp(-logit))
    schools_of = school_frame["school"].gather(school_index)
    country_of = school_frame["country"].gather(school_index)
    refs = pl.select(pl.format("P{}", pl.int_range(students).cast(pl.String).str.zfill(7))).to_series()
    language_of = country_of.replace_strict({c: langs[0] for c, langs in COUNTRIES.items()})
    student_frame = pl.DataFrame(
        {
            "student_ref": refs,
            "country": country_of,
            "school": schools_of,
            "stage": stage,
            "class": pl.Series(["A", "B", "C"]).gather(np.arange(students) % 3),
            "language": language_of,
            "birth_year": year - age - (birth_month > 6).astype(int),
            "birth_month": birth_month,
        }
    ).with_columns(pl.format("{}{}", pl.col("stage"), pl.col("class")).alias("class"))
    questionnaire = pl.DataFrame(
        {
            "student_ref": refs,
            "school": schools_of,
            "country": country_of,
            "stage": stage,
            "gender": pl.Series(["female", "male", "other"]).gather(gender),
            "age": age,
            "ses_quintile": ses,
            "migrant_background": migrant,
            "special_needs": special_needs,
            "engagement": np.round(engagement, 2),
            "teacher_relationship": np.round(relationship, 2),
            "belonging": np.round(belonging, 2),
            "attendance_pct": np.round(attendance, 1),
            "grade_average": np.round(grades, 1),
            "esl_risk": np.round(risk, 4),
            "left_school_early": rng.random(students) < risk,
        }
    )
    return SyntheticData(
        students=student_frame,
        guardians=_guardians(rng, student_frame),
        teachers=_teachers(school_frame, teachers_per_school),
        questionnaire=questionnaire,
    )


def _guardians(rng: np.random.Generator, students: pl.DataFrame) -> pl.DataFrame:
    count = students.height
    second = rng.random(count) < 0.55
    index = np.concatenate([np.arange(count), np.nonzero(second)[0]])
    by_school = rng.random(index.size) < 0.15
    fathers = int(second.sum())
    # Two guardians of one child never share a name: mothers' and fathers' first names differ.
    frame = students.select("student_ref", "school", "language")[index].with_columns(
        relation=pl.Series(np.concatenate([np.zeros(count, dtype=np.int8), np.ones(fathers, dtype=np.int8)])),
        first=pl.concat(
            [
                pl.Series(MOTHERS).gather(rng.integers(0, len(MOTHERS), count)),
                pl.Series(FATHERS).gather(rng.integers(0, len(FATHERS), fathers)),
            ]
        ),
        last=pl.Series(LAST_NAMES).gather(rng.integers(0, len(LAST_NAMES), index.size)),
        by_school=pl.Series(by_school),
        n=pl.Series(index),
    )
    relation = pl.when(pl.col("relation") == 0).then(pl.lit("mother")).otherwise(pl.lit("father"))
    return frame.select(
        "student_ref",
        "school",
        pl.format("{} {}", "first", "last").alias("name"),
        pl.when(pl.col("by_school"))
        .then(pl.lit(""))
        .otherwise(pl.format("guardian{}.{}@family.example.org", "n", relation))
        .alias("email"),
        pl.when(pl.col("by_school")).then(pl.lit("school")).otherwise(pl.lit("email")).alias("delivery"),
        "language",
        relation.alias("relation"),
    )


def _teachers(schools: pl.DataFrame, per_school: int) -> pl.DataFrame:
    rows = [
        (
            f"Teacher {n + 1} {school}",
            f"t{n + 1}.{school.lower()}@school.example.org",
            country,
            school,
            COUNTRIES[country][0],
        )
        for school, country in zip(schools["school"], schools["country"], strict=True)
        for n in range(per_school)
    ]
    return pl.DataFrame(rows, schema=["name", "email", "country", "school", "language"], orient="row")


def write_rosters(data: SyntheticData, folder: Path, *, parquet: bool = False) -> dict[str, Path]:
    """Write ``students.csv``, ``guardians.csv``, ``teachers.csv`` and the questionnaire to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "students": folder / "students.csv",
        "guardians": folder / "guardians.csv",
        "teachers": folder / "teachers.csv",
        "questionnaire": folder / ("questionnaire.parquet" if parquet else "questionnaire.csv"),
    }
    data.students.write_csv(paths["students"])
    data.guardians.write_csv(paths["guardians"])
    data.teachers.write_csv(paths["teachers"])
    if parquet:
        data.questionnaire.write_parquet(paths["questionnaire"])
    else:
        data.questionnaire.write_csv(paths["questionnaire"])
    return paths
