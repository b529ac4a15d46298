"""The whole LET'S CARE story, told once through the HTTP API of the deployed product.

The product runs as an operator deploys it: ``enclave serve``, a Celery worker and Celery beat as
processes of their own on Redis, PostgreSQL with committed data, SeaweedFS over HTTPS as the object
store, OpenBao transit as the key backend and an SMTP server on loopback. Only the very first
administrator is created with ``enclave admin create`` (and the schema with ``enclave db upgrade``);
everything else happens over HTTP, as the people of the project would do it:

1. the administrator creates the staff, each enrols an authenticator; the DPO publishes the consent
   forms; the stewards of Spain and Bulgaria import their rosters and send invitations (emails
   arrive over SMTP, students get printed letters);
2. guardians follow the links of their emails and decide; a 14-year-old in Spain decides alone with
   the code of their letter; in Bulgaria a 15-year-old's guardian and the child both act (joint
   consent from 14 to 17), and where only the guardian acted nothing is granted;
3. the Spanish steward ingests a questionnaire: only consenting subjects are stored, encrypted, in
   the S3 bucket (nothing readable in the stored bytes);
4. a researcher proposes a project; the DPO approves a budget above the second-approval threshold,
   which stays pending until a second approver approves the same terms;
5. the researcher previews the accuracy, releases grouped statistics and asks the same again at no
   cost;
6. a guardian withdraws: the same query is a new release (the consenting set changed), the erasure
   job on the worker rewrites the stored data without the child and shreds the old data keys;
7. the budget runs out and the next release is refused;
8. the DPO and the legal reviewer verify the ledger, export it with proofs and sign off a range; a
   ledger row changed behind the product's back is then found at its sequence number.

The steps are test functions of one module sharing one world, run in order.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pypdfium2 as pdfium
import pytest
import urllib3
from minio import Minio
from sqlalchemy import select, text

from access.audit import canonical
from access.audit.merkle import verify_inclusion
from access.projects.agreement import current_agreement
from consent.decisions.models import Pseudonym
from enclave.components import Components, build_components
from enclave.objects.models import DataKey
from enclave.objects.store import EncryptedStore, ObjectContext
from infra.db import make_engine
from infra.migrate import upgrade
from infra.storage.s3 import S3Storage
from tests.conftest import recreate_database
from tests.support.openbao import OpenBao
from tests.support.seaweedfs import SeaweedFS, random_bucket
from tests.support.smtp import SmtpServer
from tests.support.story import Deployment, Person, deploy, enclave_cli, link_in, wait_until

pytestmark = pytest.mark.slow

FORMS = Path(__file__).resolve().parents[2] / "consent" / "data" / "forms"
ES_SCHOOL = "ES-MAD-001"
BG_SCHOOL = "BG-SOF-001"
DATASET = "questionnaire-es-wave1"
DOMAIN = "letscare-main"
PASSWORD_PREFIX = "Story-"


def born_aged(age: int) -> tuple[int, int]:
    """Birth year and month of someone who is ``age`` today and stays so for weeks."""
    today = datetime.now(UTC).date()
    month = 6 if today.month >= 9 or today.month <= 3 else 12
    return today.year - age - (1 if month >= today.month else 0), month


Roster = list[tuple[str, int, str | None]]
"""Who is on a school's roster: (student_ref, age, guardian's email or None)."""

ES_STUDENTS: Roster = [
    ("ES-0014", 14, None),  # decides alone, with the code of their letter
    ("ES-0601", 6, "ana.garcia@example.org"),  # guardian grants, later withdraws
    ("ES-0602", 6, "luis.moreno@example.org"),  # guardian grants
    ("ES-0603", 6, "carmen.ruiz@example.org"),  # guardian declines
    ("ES-0016", 16, None),  # never answers
]
BG_STUDENTS: Roster = [
    ("BG-0015", 15, "maria.ivanova@example.org"),  # guardian and child both grant
    ("BG-0115", 15, "petar.petrov@example.org"),  # only the guardian grants
]


def hidden(html: str) -> dict[str, str]:
    """The hidden fields of the first form of a page."""
    return dict(re.findall(r'<input type="hidden" name="([a-z_0-9]+)" value="([^"]*)"', html))


@dataclass
class World:
    """Everything the steps share."""

    deployment: Deployment
    components: Components
    smtp: SmtpServer
    weed: SeaweedFS
    bucket: str
    people: dict[str, Person] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)
    """student_ref → subject id (as the steward's roster shows it)."""
    families: dict[str, httpx.Client] = field(default_factory=dict)
    """Family sessions still open, by student_ref."""
    letters: dict[str, str] = field(default_factory=dict)
    """student_ref → the code printed on their letter."""
    project_id: str = ""
    first_release: dict[str, Any] = field(default_factory=dict)
    keys_before_withdrawal: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.deployment.base

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60, follow_redirects=False)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: SeaweedFS, openbao: OpenBao
) -> Iterator[World]:
    """A fresh committed database and the whole deployment around it."""
    database_url = recreate_database("enclave_test_story")
    engine = make_engine(database_url)
    upgrade(engine)  # what `enclave db upgrade` does
    smtp = SmtpServer()
    smtp.start()
    bucket = random_bucket()
    storage = S3Storage.from_settings(seaweedfs.settings(s3_bucket=bucket))
    storage.ensure_bucket()  # what the deployment's minio-init does
    storage.close()
    data_dir = tmp_path_factory.mktemp("story")
    try:
        with deploy(
            database_url=database_url,
            data_dir=data_dir,
            weed=seaweedfs,
            bao=openbao,
            smtp=smtp,
            bucket=bucket,
        ) as deployment:
            components = build_components(deployment.settings, engine=engine)
            built = World(deployment, components, smtp, seaweedfs, bucket)
            try:
                yield built
            finally:
                for client in [*built.families.values(), *(p.client for p in built.people.values())]:
                    client.close()
    finally:
        smtp.stop()
        engine.dispose()


def staff(world: World, key: str, roles: list[str], country: str | None = None) -> Person:
    """The administrator creates an account; the person signs in, enrols TOTP and signs in again."""
    admin = world.people["admin"]
    email = f"{key}@letscare.example.org"
    password = PASSWORD_PREFIX + secrets.token_urlsafe(12)
    body: dict[str, Any] = {"email": email, "display_name": key.title(), "roles": roles, "password": password}
    if country:
        body["country"] = country
    created = admin.client.post("/api/admin/accounts", json=body)
    assert created.status_code == 201, created.text
    person = Person(email, password, None, world.client(), created.json()["id"])
    first = person.sign_in()
    if set(roles) & {"dpo", "legal_reviewer", "data_steward"}:
        assert first.get("scope") == "mfa_enrolment", first  # nothing but enrolment until TOTP is on
    assert len(person.enrol_totp()) >= 8
    person.sign_in()
    me = person.client.get("/api/auth/me").json()
    assert me["mfa_enrolled"] is True
    assert sorted(me["roles"]) == sorted(roles)
    world.people[key] = person
    return person


def roster_csv(country: str, school: str, rows: Roster, language: str) -> bytes:
    lines = ["student_ref,country,school,stage,class,language,birth_year,birth_month"]
    for ref, age, _ in rows:
        year, month = born_aged(age)
        stage = 1 if age < 10 else 3
        lines.append(f"{ref},{country},{school},{stage},{stage}A,{language},{year},{month}")
    return ("\n".join(lines) + "\n").encode()


def guardians_csv(school: str, rows: Roster, language: str) -> bytes:
    lines = ["student_ref,school,name,email,delivery,language,relation"]
    for ref, _, email in rows:
        if email:
            name = email.split("@")[0].replace(".", " ").title()
            lines.append(f"{ref},{school},{name},{email},email,{language},mother")
    return ("\n".join(lines) + "\n").encode()


def letter_codes(pdf: bytes, refs: list[str]) -> dict[str, str]:
    """The short code printed on each student's letter (one letter a page, naming class and reference)."""
    document = pdfium.PdfDocument(pdf)
    try:
        pages = [" ".join(page.get_textpage().get_text_range().split()) for page in document]
    finally:
        document.close()
    codes: dict[str, str] = {}
    for page in pages:
        code = re.search(r"\b([0-9A-Z]{5}-[0-9A-Z]{5})\b", page)
        named = [ref for ref in refs if ref in page]
        assert code, page
        assert len(named) == 1, page
        codes[named[0]] = code.group(1)
    return codes


def open_link(world: World, ref: str, link: str) -> httpx.Client:
    """A family follows the link of their email: a short family session opens."""
    family = world.client()
    path = httpx.URL(link).path
    opened = family.get(path)
    assert opened.status_code == 303, opened.text
    world.families[ref] = family
    return family


def open_code(world: World, ref: str, code: str) -> httpx.Client:
    """A student types the code of their letter."""
    family = world.client()
    opened = family.post("/code", data={"code": code.lower().replace("-", " ")})
    assert opened.status_code == 303, opened.text
    world.families[ref] = family
    return family


def decide(family: httpx.Client, subject_id: str, action: str) -> str:
    """Read the form, answer every purpose (``accept_all`` or ``decline_all``), confirm; the receipt."""
    page = family.get(f"/family/decide/{subject_id}?lang=en")
    assert page.status_code == 200, page.text
    summary = family.post(f"/family/decide/{subject_id}", data={**hidden(page.text), "action": action})
    assert summary.status_code == 200, summary.text
    confirmed = family.post(f"/family/decide/{subject_id}/confirm", data=hidden(summary.text))
    assert confirmed.status_code == 303, confirmed.text
    receipt = family.get(confirmed.headers["location"] + "?lang=en")
    assert receipt.status_code == 200
    assert "Your receipt" in receipt.text
    return receipt.text


def status_of(world: World, steward: str, ref: str) -> str:
    answer = world.people[steward].client.get(f"/api/consent/subjects/{world.subjects[ref]}/status")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["statuses"]["questionnaires"])


def decrypt_everything(world: World) -> dict[str, bytes]:
    """Every object in the bucket, decrypted with the enclave's keys; an object without a key fails."""
    store = EncryptedStore(None, world.components.keys, world.components.storage)
    plain: dict[str, bytes] = {}
    with world.components.session_factory() as session:
        live = {row.storage_key: row for row in session.scalars(select(DataKey)) if row.wrapped_key}
        for info in store.storage.list("datasets/"):
            assert info.key in live, f"{info.key} is stored but has no live data key"
            row = live[info.key]
            plain[info.key] = store.read_object(
                session, ObjectContext(row.dataset_id, row.dataset_version, row.object_name)
            )
    return plain


def pseudonym_of(world: World, ref: str) -> str:
    with world.components.session_factory() as session:
        return session.execute(
            select(Pseudonym.pseudonym).where(
                Pseudonym.domain == DOMAIN, Pseudonym.subject_id == world.subjects[ref]
            )
        ).scalar_one()


def count_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "dataset": DATASET,
        "statistic": "count",
        "group_by": ["gender"],
        "epsilon": "1.0",
    }
    spec.update(overrides)
    return spec


# --- 1. staff, forms, rosters and invitations ------------------------------------------------------


def test_1_admin_creates_staff_who_enrol_totp_and_stewards_invite_families(world: World) -> None:
    env = world.deployment.env
    admin_password = PASSWORD_PREFIX + secrets.token_urlsafe(12)
    printed = enclave_cli(
        env,
        "admin",
        "create",
        "--email=admin@letscare.example.org",
        "--name=Administrator",
        "--password-from-stdin",
        stdin=admin_password + "\n",
    )
    secret = re.search(r"TOTP secret: ([A-Z2-7]+)", printed)
    assert secret, printed
    admin = Person("admin@letscare.example.org", admin_password, secret.group(1), world.client())
    world.people["admin"] = admin
    admin.sign_in()

    staff(world, "dpo", ["dpo"])
    staff(world, "approver", ["dpo"])
    staff(world, "legal", ["legal_reviewer"])
    staff(world, "steward_es", ["data_steward"], country="ES")
    staff(world, "steward_bg", ["data_steward"], country="BG")
    staff(world, "researcher", ["researcher"])

    dpo = world.people["dpo"].client
    assert dpo.post("/api/consent/rules/defaults").status_code == 200
    for name in ("es-es-v1.md", "bg-bg-v1.md"):
        with (FORMS / name).open("rb") as handle:
            published = dpo.post("/api/consent/forms", files={"file": (name, handle, "text/markdown")})
        assert published.status_code == 201, published.text

    for steward, country, school, rows, language in (
        ("steward_es", "ES", ES_SCHOOL, ES_STUDENTS, "es"),
        ("steward_bg", "BG", BG_SCHOOL, BG_STUDENTS, "bg"),
    ):
        client = world.people[steward].client
        students = client.post(
            "/api/consent/rosters/students",
            files={"file": ("students.csv", roster_csv(country, school, rows, language), "text/csv")},
        )
        assert students.status_code == 200, students.text
        guardians = client.post(
            "/api/consent/rosters/guardians",
            files={"file": ("guardians.csv", guardians_csv(school, rows, language), "text/csv")},
        )
        assert guardians.status_code == 200, guardians.text
        listed = client.get("/api/consent/rosters/students", params={"limit": 100, "reveal": "true"})
        assert listed.status_code == 200, listed.text
        for student in listed.json()["items"]:
            world.subjects[student["student_ref"]] = student["subject_id"]

        sent = client.post("/api/consent/campaigns", json={"school": school})
        assert sent.status_code == 201, sent.text
        campaign = sent.json()
        emailed = [email for _, _, email in rows if email]
        assert campaign["emails_queued"] == len(emailed)
        # Students old enough to be asked themselves get a letter handed out at school.
        pdf = client.get(campaign["letters_pdf"])
        assert pdf.status_code == 200, pdf.text
        assert pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-type"] == "application/pdf"
        asked_themselves = [ref for ref, age, _ in rows if age >= 14]
        codes = letter_codes(pdf.content, [ref for ref, _, _ in rows])
        assert sorted(codes) == sorted(asked_themselves)
        assert campaign["letters"] == len(asked_themselves)
        world.letters.update(codes)

    assert set(world.subjects) == {ref for ref, _, _ in [*ES_STUDENTS, *BG_STUDENTS]}
    # The worker sends the emails once the campaign's transaction has committed.
    everyone = {email for _, _, email in [*ES_STUDENTS, *BG_STUDENTS] if email}
    wait_until(
        "the invitation emails over SMTP",
        lambda: {r for m in world.smtp.received for r in m.rcpt_tos} >= everyone,
        timeout=60,
    )


# --- 2. families decide -----------------------------------------------------------------------------


def email_to(world: World, address: str) -> str:
    messages = [m for m in world.smtp.received if address in m.rcpt_tos]
    assert len(messages) == 1, [m.rcpt_tos for m in world.smtp.received]
    body = messages[0].message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def test_2_families_follow_their_links_and_decide(world: World) -> None:
    guardians = {ref: email for ref, _, email in [*ES_STUDENTS, *BG_STUDENTS] if email}
    for ref, email in guardians.items():
        family = open_link(world, ref, link_in(email_to(world, email)))
        home = family.get("/family?lang=en")
        assert home.status_code == 200
        assert f"/family/decide/{world.subjects[ref]}" in home.text
        decide(family, world.subjects[ref], "decline_all" if ref == "ES-0603" else "accept_all")

    # The 14-year-old in Spain decides alone, on their own text.
    teen = open_code(world, "ES-0014", world.letters["ES-0014"])
    decide(teen, world.subjects["ES-0014"], "accept_all")
    # In Bulgaria a 15-year-old consents together with a guardian: one of the two children acts too.
    child = open_code(world, "BG-0015", world.letters["BG-0015"])
    decide(child, world.subjects["BG-0015"], "accept_all")

    assert status_of(world, "steward_es", "ES-0014") == "granted"
    assert status_of(world, "steward_es", "ES-0601") == "granted"
    assert status_of(world, "steward_es", "ES-0602") == "granted"
    assert status_of(world, "steward_es", "ES-0603") != "granted"
    assert status_of(world, "steward_es", "ES-0016") != "granted"
    assert status_of(world, "steward_bg", "BG-0015") == "granted"
    assert status_of(world, "steward_bg", "BG-0115") != "granted", "the child's own answer is missing"
    regimes = {
        ref: world.people[steward]
        .client.get(f"/api/consent/subjects/{world.subjects[ref]}/status")
        .json()["regime"]
        for steward, ref in (("steward_es", "ES-0014"), ("steward_es", "ES-0601"), ("steward_bg", "BG-0015"))
    }
    assert regimes == {"ES-0014": "self", "ES-0601": "guardian", "BG-0015": "joint"}


# --- 3. ingestion -----------------------------------------------------------------------------------


def test_3_steward_ingests_a_questionnaire_only_consenting_subjects_are_stored_encrypted(
    world: World,
) -> None:
    steward = world.people["steward_es"].client
    declared = steward.post(
        "/api/datasets",
        json={
            "id": DATASET,
            "title": "Questionnaire, first wave (Spain)",
            "purpose": "questionnaires",
            "domain": DOMAIN,
            "retention_until": (date.today() + timedelta(days=365)).isoformat(),
            "schema": {
                "subject_id_column": "student_ref",
                "school_column": "school",
                "drop_columns": [],
                "variables": [
                    {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
                    {"name": "stage", "type": "integer", "min": 1, "max": 4},
                    {"name": "engagement", "type": "numeric", "min": 1, "max": 5},
                ],
            },
        },
    )
    assert declared.status_code == 201, declared.text
    answers = pl.DataFrame(
        {
            "student_ref": [ref for ref, _, _ in ES_STUDENTS],
            "school": [ES_SCHOOL] * len(ES_STUDENTS),
            "gender": ["female", "male", "female", "male", "other"],
            "stage": [3, 1, 1, 1, 3],
            "engagement": [4.5, 3.0, 2.5, 4.0, 3.5],
        }
    )
    uploaded = steward.post(
        f"/api/datasets/{DATASET}/versions",
        files={"file": ("answers.csv", answers.write_csv().encode(), "text/csv")},
    )
    assert uploaded.status_code == 201, uploaded.text
    report = uploaded.json()
    assert report["rows_in"] == 5
    assert report["rows_stored"] == 3  # ES-0014, ES-0601, ES-0602
    assert report["excluded_without_consent"] == 2

    # In the bucket, as anyone with the S3 credentials would see it: ciphertext only.
    http = urllib3.PoolManager(ca_certs=str(world.weed.ca_bundle))
    s3 = Minio(
        world.weed.endpoint,
        access_key=world.weed.access_key,
        secret_key=world.weed.secret_key,
        secure=True,
        http_client=http,
    )
    objects = [o.object_name for o in s3.list_objects(world.bucket, prefix="datasets/", recursive=True)]
    assert objects, "nothing stored"
    stored_pseudonyms = [pseudonym_of(world, ref) for ref in ("ES-0014", "ES-0601", "ES-0602")]
    for name in objects:
        response = s3.get_object(world.bucket, name)
        try:
            raw = response.read()
        finally:
            response.close()
            response.release_conn()
        for readable in [
            b"pseudonym",
            b"gender",
            b"engagement",
            b"female",
            b"PAR1",
            *map(str.encode, stored_pseudonyms),
        ]:
            assert readable not in raw, f"{readable!r} readable in {name}"
    plain = decrypt_everything(world)
    kept = {p for blob in plain.values() for p in pl.read_parquet(io.BytesIO(blob))["pseudonym"].to_list()}
    assert kept == set(stored_pseudonyms)


# --- 4. the project ---------------------------------------------------------------------------------


def test_4_researcher_proposes_and_a_large_budget_needs_two_approvers(world: World) -> None:
    researcher = world.people["researcher"].client
    agreement = current_agreement()
    today = date.today()
    variables = [f"{DATASET}.gender", f"{DATASET}.stage", f"{DATASET}.engagement"]
    proposed = researcher.post(
        "/api/projects",
        json={
            "title": "Engagement at school in the first wave",
            "purpose": "questionnaires",
            "lawful_basis": "gdpr_6_1_e_public_task",
            "datasets": [DATASET],
            "variables": variables,
            "justification": "Describe engagement by gender in the first wave of the questionnaire.",
            "requested_epsilon": "2.5",
            "start_date": today.isoformat(),
            "end_date": (today + timedelta(days=365)).isoformat(),
            "ethics_reference": "ETH-2026/211",
            "agreement": {"version": agreement.version, "sha256": agreement.sha256, "accepted": True},
            "training": {
                "reference": "GDPR-TRAINING-7",
                "expires_on": (today + timedelta(days=200)).isoformat(),
            },
        },
    )
    assert proposed.status_code == 201, proposed.text
    project_id = proposed.json()["id"]
    world.project_id = project_id
    submitted = researcher.post(f"/api/projects/{project_id}/submit")
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "submitted"

    terms = {
        "granted_epsilon": "2.5",
        "datasets": [DATASET],
        "variables": variables,
        "end_date": (today + timedelta(days=300)).isoformat(),
    }
    first = world.people["dpo"].client.post(f"/api/projects/{project_id}/approve", json=terms)
    assert first.status_code == 200, first.text
    assert first.json()["approvals_required"] == 2  # 2.5 is above the threshold of 2.0
    assert first.json()["status"] == "submitted"
    assert len(first.json()["approvals"]) == 1
    # Until the second approval nothing can be released.
    early = researcher.post("/api/dp/queries", json={"project_id": project_id, "spec": count_spec()})
    assert early.status_code in (403, 409), early.text

    second = world.people["approver"].client.post(f"/api/projects/{project_id}/approve", json=terms)
    assert second.status_code == 200, second.text
    assert second.json()["status"] in ("approved", "active")
    assert Decimal(second.json()["granted_epsilon"]) == Decimal("2.5")


# --- 5. releases ------------------------------------------------------------------------------------


def budget(world: World) -> dict[str, Any]:
    answer = world.people["researcher"].client.get(f"/api/dp/projects/{world.project_id}/budget")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def release(world: World, spec: dict[str, Any]) -> httpx.Response:
    return world.people["researcher"].client.post(
        "/api/dp/queries", json={"project_id": world.project_id, "spec": spec}
    )


def test_5_researcher_previews_releases_and_asks_again_at_no_cost(world: World) -> None:
    researcher = world.people["researcher"].client
    preview = researcher.post("/api/dp/preview", json={"project_id": world.project_id, "spec": count_spec()})
    assert preview.status_code == 200, preview.text
    assert Decimal(preview.json()["epsilon"]) == 1
    assert all(s["accuracy_95"] > 0 for s in preview.json()["statistics"])
    assert Decimal(budget(world)["spent"]) == 0  # a preview costs nothing

    first = release(world, count_spec())
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["reused"] is False
    assert Decimal(body["charged_epsilon"]) == 1
    groups = {row["gender"] for row in body["result"]["rows"]}
    assert groups == {"female", "male", "other"}  # every category, from the catalog, not from the data
    world.first_release = body
    assert Decimal(budget(world)["remaining"]) == Decimal("1.5")

    again = release(world, count_spec())
    assert again.status_code == 200, again.text
    assert again.json()["reused"] is True
    assert again.json()["id"] == body["id"]
    assert Decimal(again.json()["charged_epsilon"]) == 0
    assert Decimal(budget(world)["remaining"]) == Decimal("1.5")


# --- 6. withdrawal and erasure ----------------------------------------------------------------------


def test_6_a_guardian_withdraws_the_next_release_excludes_the_child_and_the_worker_erases_them(
    world: World,
) -> None:
    child = "ES-0601"
    pseudonym = pseudonym_of(world, child)
    with world.components.session_factory() as session:
        world.keys_before_withdrawal = [
            row.id
            for row in session.scalars(
                select(DataKey).where(DataKey.dataset_id == DATASET, DataKey.destroyed_at.is_(None))
            )
        ]
    assert world.keys_before_withdrawal

    # The guardian, still on the family pages, withdraws: two clicks.
    family = world.families[child]
    subject = world.subjects[child]
    first_click = family.get(f"/family/withdraw/{subject}?purpose=questionnaires&lang=en")
    assert first_click.status_code == 200, first_click.text
    second_click = family.post(f"/family/withdraw/{subject}", data=hidden(first_click.text))
    assert second_click.status_code == 303, second_click.text
    assert "done=withdrawn" in second_click.headers["location"]
    assert status_of(world, "steward_es", child) == "withdrawn"

    # The same question is a new release: the set of consenting children changed.
    after = release(world, count_spec())
    assert after.status_code == 200, after.text
    assert after.json()["reused"] is False
    assert after.json()["id"] != world.first_release["id"]
    assert Decimal(after.json()["charged_epsilon"]) == 1
    assert Decimal(budget(world)["remaining"]) == Decimal("0.5")

    # The erasure job runs on the worker and leaves its proof in the ledger.
    dpo = world.people["dpo"].client

    def erased() -> list[dict[str, Any]]:
        answer = dpo.get("/api/audit/entries", params={"action": "enclave.subject_rows_erased"})
        assert answer.status_code == 200, answer.text
        entries: list[dict[str, Any]] = answer.json()["entries"]
        return entries

    proof = wait_until("the erasure job on the worker", erased, timeout=60)
    assert proof[0]["details"]["rows_removed"] == 1
    assert pseudonym not in str(proof), "the proof names no subject"

    plain = decrypt_everything(world)
    assert plain, "the rewritten version is stored"
    for blob in plain.values():
        assert pseudonym not in pl.read_parquet(io.BytesIO(blob))["pseudonym"].to_list()
    with world.components.session_factory() as session:
        old = session.scalars(select(DataKey).where(DataKey.id.in_(world.keys_before_withdrawal))).all()
        assert old
        assert all(row.destroyed_at is not None and row.wrapped_key == "" for row in old)


# --- 7. the budget runs out -------------------------------------------------------------------------


def test_7_the_budget_runs_out_and_the_next_release_is_refused(world: World) -> None:
    mean = {"dataset": DATASET, "statistic": "mean", "variable": "engagement", "bounds": [1.0, 5.0]}
    last = release(world, {**mean, "epsilon": "0.5"})
    assert last.status_code == 200, last.text
    assert last.json()["reused"] is False
    assert Decimal(budget(world)["remaining"]) == 0
    refused = release(world, {**mean, "epsilon": "0.1"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["reason"] == "budget_exhausted"
    assert Decimal(budget(world)["spent"]) == Decimal("2.5")


# --- 8. the ledger ----------------------------------------------------------------------------------


def test_8_reviewers_verify_export_and_sign_off_and_a_tampered_row_is_found(world: World) -> None:
    dpo = world.people["dpo"].client
    legal = world.people["legal"].client
    verified = dpo.get("/api/audit/verify")
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True, verified.json()
    checkpoint = dpo.post("/api/audit/checkpoints")
    assert checkpoint.status_code == 201, checkpoint.text
    size = checkpoint.json()["tree_size"]

    exported = legal.get("/api/audit/export", params={"format": "json"})
    assert exported.status_code == 200, exported.text
    export = exported.json()
    signed_tree = export["checkpoint"]
    assert signed_tree["tree_size"] >= size
    assert export["count"] == len(export["entries"]) > 0
    # Each exported entry is proven under the signed root, offline, with the entry's hash alone.
    for entry in export["entries"]:
        assert verify_inclusion(
            entry["leaf_index"],
            signed_tree["tree_size"],
            canonical.entry_leaf(entry["entry_hash"]),
            [bytes.fromhex(h) for h in entry["inclusion_proof"]],
            bytes.fromhex(signed_tree["root_hash"]),
        ), entry["seq"]

    signed = legal.post(
        "/api/audit/signoffs", json={"first_seq": 1, "last_seq": size, "comment": "Reviewed."}
    )
    assert signed.status_code == 201, signed.text

    released = dpo.get("/api/audit/entries", params={"action": "dp.query_released"}).json()["entries"]
    seq = released[0]["seq"]
    with world.components.engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only"))
        connection.execute(
            text("UPDATE audit_entry SET project_id = 'another-project' WHERE seq = :seq"), {"seq": seq}
        )
        connection.execute(text("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only"))
    found = legal.get("/api/audit/verify").json()
    assert found["ok"] is False
    assert found["first_bad_seq"] == seq
    assert found["problems"][0]["seq"] == seq
