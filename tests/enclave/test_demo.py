"""The seeded demo: `enclave demo` on the embedded default starts with the LET'S CARE story in it.

A small demo (600 students) is seeded once per module with `--no-serve`, then started again and
served: the second start finds the seed and adds nothing, and every check goes through the HTTP API
of the served product, signing in as the printed demo accounts with their printed TOTP secrets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyotp
import pytest
from sqlalchemy import create_engine, text

from tests.support.processes import free_port, stop, wait_for_http

STUDENTS = 600
ROLES = {"admin", "dpo", "legal_reviewer", "researcher", "data_steward"}
ACCOUNT_LINE = re.compile(
    r"^\s+(?P<role>[a-z_]+)\s+(?P<email>\S+@\S+)\s+password: (?P<password>\S+)"
    r"\s+TOTP secret: (?P<secret>[A-Z2-7]+)"
)


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update({"ENCLAVE_DATA_DIR": str(data_dir), "ENCLAVE_LOG_LEVEL": "WARNING", "COLUMNS": "200"})
    env.update(extra)
    return env


def _demo(data_dir: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enclave", "demo", *args],
        env=_env(data_dir, **env),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Printed:
    role: str
    email: str
    password: str
    secret: str


def _accounts(output: str) -> list[Printed]:
    return [
        Printed(m["role"], m["email"], m["password"], m["secret"])
        for line in output.splitlines()
        if (m := ACCOUNT_LINE.match(line))
    ]


def _counts(data_dir: Path) -> dict[str, int]:
    engine = create_engine(f"sqlite:///{data_dir / 'enclave.db'}")
    tables = (
        "account",
        "consent_student",
        "consent_guardian",
        "consent_teacher",
        "consent_decision",
        "enclave_dataset",
        "enclave_dataset_version",
        "research_project",
    )
    with engine.connect() as connection:
        counts = {t: connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}
    engine.dispose()
    return counts


@dataclass
class Demo:
    base: str
    data_dir: Path
    first: subprocess.CompletedProcess[str]
    first_seconds: float
    second_output: str
    counts_after_first: dict[str, int]
    counts_after_second: dict[str, int]
    accounts: list[Printed]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("demo") / "var"
    started = time.perf_counter()
    first = _demo(data_dir, "--students", str(STUDENTS), "--schools", "12", "--no-serve")
    seconds = time.perf_counter() - started
    assert first.returncode == 0, first.stdout + first.stderr
    counts = _counts(data_dir)
    port = free_port()
    log = data_dir.parent / "second.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "enclave", "demo", "--students", str(STUDENTS), "--port", str(port)],
            env=_env(data_dir),
            cwd=data_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", process, log, timeout=120)
        yield Demo(
            base=base,
            data_dir=data_dir,
            first=first,
            first_seconds=seconds,
            second_output=log.read_text(),
            counts_after_first=counts,
            counts_after_second=_counts(data_dir),
            accounts=_accounts(first.stdout),
        )
    finally:
        stop(process)


def _token(base: str, account: Printed) -> str:
    answer = httpx.post(
        f"{base}/api/auth/token",
        data={
            "username": account.email,
            "password": account.password,
            "totp": pyotp.TOTP(account.secret).now(),
        },
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def tokens(demo) -> dict[str, str]:
    return {account.email.split("@")[0]: _token(demo.base, account) for account in demo.accounts}


def _get(demo: Demo, token: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{demo.base}{path}", params=params, headers={"Authorization": f"Bearer {token}"})


def test_the_start_up_prints_how_to_sign_in_as_every_role_with_totp_secrets(demo):
    assert {a.role for a in demo.accounts} == ROLES
    assert len([a for a in demo.accounts if a.role == "data_steward"]) == 6
    assert "/staff/login" in demo.first.stdout
    assert "seeded in" in demo.first.stdout
    print(f"seeding {STUDENTS} students took {demo.first_seconds:.1f} s")


def test_the_pages_each_role_is_sent_to_exist(demo):
    from enclave.demo import START_PAGES

    for role, where in START_PAGES.items():
        path = where.split()[0].rstrip(",")
        answer = httpx.get(f"{demo.base}{path}", follow_redirects=False)
        assert answer.status_code in {200, 303}, (role, path, answer.status_code)
        if answer.status_code == 303:
            assert answer.headers["location"].startswith("/staff/login"), (role, path)


def test_every_demo_account_signs_in_with_its_password_and_a_totp_code(demo, tokens):
    assert len(tokens) == len(demo.accounts) == 10
    for name, token in tokens.items():
        me = _get(demo, token, "/api/auth/me")
        assert me.status_code == 200, (name, me.text)


def test_a_second_start_finds_the_seed_and_adds_nothing(demo):
    assert "seeded before" in demo.second_output
    assert demo.counts_after_second == demo.counts_after_first
    counts = demo.counts_after_first
    assert counts["consent_student"] == STUDENTS
    assert counts["account"] == 10
    assert counts["research_project"] == 1
    assert counts["enclave_dataset_version"] == counts["enclave_dataset"] == 6


def test_the_served_demo_fills_the_consent_status_cache_soon_after_start(demo):
    engine = create_engine(f"sqlite:///{demo.data_dir / 'enclave.db'}")
    deadline = time.monotonic() + 90
    try:
        while True:
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT COUNT(*) FROM consent_status_cache")).scalar_one()
            if rows == STUDENTS or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        engine.dispose()
    assert rows == STUDENTS


def test_the_catalog_holds_the_questionnaire_datasets_with_a_published_version(demo, tokens):
    catalog = _get(demo, tokens["researcher"], "/api/datasets")
    assert catalog.status_code == 200, catalog.text
    datasets = {d["id"]: d for d in catalog.json()}
    assert len(datasets) == 6
    for dataset in datasets.values():
        assert dataset["latest_version"] == 1
        assert dataset["purpose"] == "questionnaires"
        assert {"engagement", "belonging", "left_school_early"} <= {
            v["name"] for v in dataset["schema"]["variables"]
        }
    spain = _get(demo, tokens["steward-es"], "/api/datasets/wave1-questionnaire-es").json()
    (version,) = spain["versions"]
    assert version["state"] == "published"
    assert version["rows"] > 0
    assert version["excluded_without_consent"] > 0  # refusals, withdrawals and pending families


def test_the_research_project_is_approved_with_its_budget(demo, tokens):
    projects = _get(demo, tokens["researcher"], "/api/projects")
    assert projects.status_code == 200, projects.text
    body = projects.json()
    items = body["items"] if isinstance(body, dict) else body
    (project,) = items
    assert project["status"] in {"approved", "active"}
    assert project["granted_epsilon"] == "3"
    assert len(project["approvals"]) == 2  # above the second-approval threshold: DPO and admin


def test_consent_statuses_are_a_realistic_mix(demo, tokens):
    token = tokens["steward-es"]
    page = _get(demo, token, "/api/consent/rosters/students", limit=500)
    assert page.status_code == 200, page.text
    subjects = [s["subject_id"] for s in page.json()["items"]]
    answer = httpx.post(
        f"{demo.base}/api/consent/status",
        json={"subject_ids": subjects, "purposes": ["questionnaires"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    statuses = [row["questionnaires"] for row in answer.json()["statuses"].values()]
    seen = {status: statuses.count(status) for status in set(statuses)}
    assert {"granted", "declined", "withdrawn", "pending"} <= set(seen), seen
    assert seen["granted"] > len(statuses) / 2, seen
    # Portugal has no published form in the demo set: its families have not decided yet.
    portugal = _get(demo, tokens["steward-pt"], "/api/consent/rosters/students", limit=500).json()["items"]
    answer = httpx.post(
        f"{demo.base}/api/consent/status",
        json={"subject_ids": [s["subject_id"] for s in portugal], "purposes": ["questionnaires"]},
        headers={"Authorization": f"Bearer {tokens['steward-pt']}"},
    )
    assert {row["questionnaires"] for row in answer.json()["statuses"].values()} == {"pending"}


def test_production_refuses_the_demo_with_a_clear_message(tmp_path):
    refused = _demo(
        tmp_path / "var",
        ENCLAVE_ENVIRONMENT="production",
        ENCLAVE_SECRET_KEY="a-production-secret-of-at-least-32-characters",
        ENCLAVE_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
        timeout=60,
    )
    assert refused.returncode not in (0, None)
    assert "refused in production" in refused.stdout + refused.stderr
    assert not (tmp_path / "var" / "enclave.db").exists()


@pytest.mark.slow
def test_the_full_demo_seeds_the_whole_project(tmp_path):
    # How long it takes is measured by the benchmark (`python -m bench.run --only demo`).
    result = _demo(tmp_path / "var", "--no-serve", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    print("\n".join(line for line in result.stdout.splitlines() if "seeded" in line or "steps" in line))
    counts = _counts(tmp_path / "var")
    assert counts["consent_student"] == 18_000
    assert counts["consent_teacher"] == 2_400
    assert counts["consent_decision"] > 50_000
    assert counts["enclave_dataset_version"] == 6
