"""Families in a real browser: a guardian in Sofia reads in Bulgarian, grants two purposes, keeps the
receipt and later withdraws one with a new link; a 15-year-old in Spain decides alone; a family with
a printed letter types the short code; a guardian in Spain reading English takes the journey the
guardians' guide shows (its screenshots). axe-core checks every page visited."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.audit.service import Actor
from consent.forms.service import load_demo_forms
from consent.identity import IdentityProtector
from consent.invitations import service as invitations
from consent.invitations.models import InvitationChannel, InvitationReason, InviteeKind
from consent.rosters.models import Delivery, Guardian, Guardianship, Student
from enclave.components import build_components
from infra.db import session_scope
from infra.settings import load_settings
from tests.support import browser as browser_support
from tests.support.axe import assert_accessible
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, committed_database, serve_product
from tests.support.consent import load_rules, make_guardian, make_student
from tests.support.processes import wait_for_http
from tests.support.screenshots import capture

pytestmark = pytest.mark.browser

START_TIMEOUT = 300


def born_aged(age: int) -> tuple[int, int]:
    """Birth year and month of someone who is ``age`` today and stays so for weeks."""
    today = datetime.now(UTC).date()
    month = 6 if today.month >= 9 or today.month <= 3 else 12
    return today.year - age - (1 if month >= today.month else 0), month


@dataclass
class Families:
    """The product on a free port, with the invitations' secrets of three families."""

    url: str
    sofia_token: str
    sofia_child: str
    spain_token: str
    letter_code: str
    english_token: str
    settings: Any


def _invite(session, keys, kind: InviteeKind, target: Guardian | Student, *, where: tuple[str, str, str]):
    school, country, language = where
    return invitations.issue(
        session,
        keys,
        kind=kind,
        target=target,
        school=school,
        country=country,
        language=language,
        channel=InvitationChannel.email if kind is InviteeKind.guardian else InvitationChannel.letter,
        reason=InvitationReason.invitation,
    )


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Families]:
    """``enclave serve`` against a committed database: the demo forms and three families."""
    url = committed_database("enclave_test_family_browser")
    data_dir = tmp_path_factory.mktemp("family-browser-data")
    settings = load_settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
    components = build_components(settings)
    keys = components.keys
    with session_scope(components.session_factory) as session:
        load_rules(session)
        load_demo_forms(session, Actor("system", Role.system))
        protector = IdentityProtector(keys)
        year, month = born_aged(10)
        child = make_student(
            session, protector, country="BG", school="BG-SOF-001", birth_year=year, birth_month=month
        )
        mother = make_guardian(session, protector, [child], language="bg")
        sofia = _invite(session, keys, InviteeKind.guardian, mother, where=("BG-SOF-001", "BG", "bg"))
        year, month = born_aged(15)
        teen = make_student(
            session,
            protector,
            country="ES",
            school="ES-AND-003",
            language="es",
            birth_year=year,
            birth_month=month,
        )
        spain = _invite(session, keys, InviteeKind.student, teen, where=("ES-AND-003", "ES", "es"))
        year, month = born_aged(9)
        pupil = make_student(
            session,
            protector,
            country="PL",
            school="PL-KRK-007",
            language="pl",
            birth_year=year,
            birth_month=month,
        )
        grandmother = make_guardian(session, protector, [pupil], language="pl", relation="other")
        grandmother.delivery = Delivery.school.value
        letter = _invite(session, keys, InviteeKind.guardian, grandmother, where=("PL-KRK-007", "PL", "pl"))
        # A guardian in Spain who asked the school for English, with a 10- and a 15-year-old.
        younger, older = born_aged(10), born_aged(15)
        lucia = make_student(
            session,
            protector,
            country="ES",
            school="ES-AND-003",
            language="en",
            birth_year=younger[0],
            birth_month=younger[1],
        )
        pablo = make_student(
            session,
            protector,
            country="ES",
            school="ES-AND-003",
            language="en",
            birth_year=older[0],
            birth_month=older[1],
        )
        father = make_guardian(session, protector, [lucia, pablo], language="en", relation="father")
        english = _invite(session, keys, InviteeKind.guardian, father, where=("ES-AND-003", "ES", "en"))
        secrets = Families(
            "", sofia.token, child.subject_id, spain.token, letter.code, english.token, settings
        )
    components.engine.dispose()

    # On a busy machine the server needs more than the helper's default minute to answer first.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(browser_support, "wait_for_http", partial(wait_for_http, timeout=START_TIMEOUT))
        with serve_product(url, data_dir) as base:
            secrets.url = base
            yield secrets


def _new_link(families: Families) -> str:
    """A later invitation for the Sofia guardian (the first link is used up)."""
    components = build_components(families.settings)
    try:
        with session_scope(components.session_factory) as session:
            student = session.execute(
                select(Student).where(Student.subject_id == families.sofia_child)
            ).scalar_one()
            guardian = session.execute(
                select(Guardian)
                .join(Guardianship, Guardianship.guardian_id == Guardian.id)
                .where(Guardianship.student_id == student.id)
            ).scalar_one()
            issued = _invite(
                session, components.keys, InviteeKind.guardian, guardian, where=("BG-SOF-001", "BG", "bg")
            )
            return issued.token
    finally:
        components.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _page(browser: Any, locale: str) -> Any:
    # axe-core is injected as a script: the pages' Content-Security-Policy would (rightly) refuse it.
    context = browser.new_context(
        accept_downloads=True, locale=locale, bypass_csp=True, viewport={"width": 320, "height": 640}
    )
    context.set_default_timeout(10_000)
    return context.new_page()


def check(page: Any) -> None:
    """No serious accessibility violation, and nothing wider than a 320-pixel phone screen."""
    assert_accessible(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 320, f"{page.url} is {width} px wide"


def test_a_guardian_reads_in_bulgarian_grants_two_purposes_keeps_the_receipt_and_later_withdraws_one(
    families: Families, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = _page(browser, "bg-BG")
    page.goto(f"{families.url}/f/{families.sofia_token}")
    expect(page.get_by_role("heading", level=1)).to_have_text("LET'S CARE: Вашите решения")
    assert page.locator("html").get_attribute("lang") == "bg"
    check(page)

    page.get_by_role("link", name="Прочетете и решете").click()
    # The form's own title is the page's one level-1 heading.
    expect(page.get_by_role("heading", level=1)).to_contain_text("формуляр за съгласие за родители")
    expect(page.locator(".form-text")).to_contain_text("Кои сме ние")
    assert page.locator("input[type=radio]:checked").count() == 0
    check(page)

    # Continuing without the required answer shows the problem next to the question.
    page.get_by_role("button", name="Към обобщението").click()
    expect(page.locator("#error-questionnaires")).to_be_visible()
    check(page)

    page.get_by_role("group", name="Въпросници в училище").get_by_label("Да, съгласен/съгласна съм").check()
    page.get_by_role("group", name="Присъствие и оценки").get_by_label("Да, съгласен/съгласна съм").check()
    page.get_by_role("button", name="Към обобщението").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Проверете отговорите си")
    check(page)

    page.get_by_role("button", name="Потвърди").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Вашето потвърждение")
    expect(page.get_by_role("status")).to_contain_text("Отговорите Ви са запазени")
    check(page)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Изтеглете записа (файл JSON)").click()
    saved = tmp_path / "record.json"
    download_info.value.save_as(saved)
    record = json.loads(saved.read_text())
    assert record["schema"] == "ISO/IEC TS 27560:2023"
    assert record["notice"]["language"] == "bg"
    assert {p["purpose"]: p["consent_status"] for p in record["processing"]} == {
        "questionnaires": "given",
        "school_records": "given",
    }
    page.get_by_role("link", name="Версия за печат").click()
    expect(page.get_by_role("heading", name="Текстът, който прочетохте")).to_be_visible()
    check(page)
    page.context.close()

    # Later, with a new link: withdraw one purpose in two clicks.
    page = _page(browser, "bg-BG")
    page.goto(f"{families.url}/f/{_new_link(families)}")
    page.get_by_role("link", name="С какво сте се съгласили").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("С какво сте се съгласили")
    check(page)
    page.get_by_role("link", name=re.compile("^Оттегляне.*Присъствие и оценки")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Искате ли да оттеглите съгласието си?")
    check(page)
    page.get_by_role("button", name="Да, оттегли").click()
    expect(page.get_by_role("status")).to_contain_text("Оттеглянето е запазено")
    check(page)
    page.get_by_role("link", name="С какво сте се съгласили").first.click()
    records = page.locator(".agreed-list li", has=page.get_by_role("heading", name="Присъствие и оценки"))
    expect(records).to_contain_text("Оттеглено")
    page.context.close()


def test_a_fifteen_year_old_in_spain_decides_alone(families: Families, browser: Any) -> None:
    from playwright.sync_api import expect

    page = _page(browser, "es-ES")
    page.goto(f"{families.url}/f/{families.spain_token}")
    expect(page.get_by_text("A tu edad decides tú.")).to_be_visible()
    check(page)
    page.get_by_role("link", name="Leer y decidir").click()
    expect(page.get_by_text("Este es tu propio consentimiento")).to_be_visible()
    check(page)
    page.get_by_role("button", name="No a todo").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Revise sus respuestas")
    check(page)
    page.get_by_role("button", name="Cambiar").click()
    page.get_by_role("group", name="Cuestionarios en la escuela").get_by_label("Sí, estoy de acuerdo").check()
    page.get_by_role("button", name="Continuar al resumen").click()
    page.get_by_role("button", name="Confirmar").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Su justificante")
    expect(page.locator(".facts")).to_contain_text("consentimiento propio")
    check(page)
    page.context.close()


def test_a_family_with_a_letter_types_the_short_code(families: Families, browser: Any) -> None:
    from playwright.sync_api import expect

    page = _page(browser, "pl-PL")
    page.goto(f"{families.url}/code")
    expect(page.get_by_role("heading", level=1)).to_have_text("Wpisz kod z listu")
    check(page)
    page.get_by_label("Kod").fill("ZZZZZ-ZZZZZ")
    page.get_by_role("button", name="Dalej").click()
    expect(page.locator("#code-error")).to_contain_text("Ten kod nie działa")
    check(page)
    typed = f"{families.letter_code[:5].lower()} {families.letter_code[5:]}"
    page.get_by_label("Kod").fill(typed)
    page.get_by_role("button", name="Dalej").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("LET'S CARE: Twoje decyzje")
    expect(page.get_by_role("link", name="Przeczytaj i zdecyduj")).to_be_visible()
    check(page)
    page.context.close()


def _shot(page: Any, name: str, *, full_page: bool = True, at: str | None = None) -> None:
    """A screenshot for the guardians' guide, then back to the phone-sized window the checks expect."""
    if at is not None:
        # The window the screenshot is taken with, scrolled to what the guide shows.
        page.set_viewport_size({"width": 1100, "height": 800})
        page.locator(at).evaluate("element => element.scrollIntoView({block: 'center'})")
    capture(page, name, full_page=full_page)
    page.set_viewport_size({"width": 320, "height": 640})


def test_a_guardian_reading_english_decides_for_one_child_keeps_the_receipt_withdraws_and_asks_for_a_copy(
    families: Families, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = _page(browser, "en-GB")
    page.goto(f"{families.url}/f/{families.english_token}")
    expect(page.get_by_role("heading", level=1)).to_have_text("LET'S CARE: your decisions")
    expect(page.get_by_text("You are here as a parent or guardian.")).to_be_visible()
    # Two children: the 15-year-old decides alone in Spain, so only the younger one has a button.
    expect(page.get_by_role("link", name="Read and decide")).to_have_count(1)
    expect(page.get_by_text("At this age the student decides alone, by law.")).to_be_visible()
    check(page)
    _shot(page, "guardian-home")

    page.get_by_role("link", name="Read and decide").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("consent form for parents")
    check(page)
    _shot(page, "guardian-decide", full_page=False, at="#purpose-questionnaires")

    # Continuing without the one answer needed: the problem is listed at the top and at the question.
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.get_by_role("heading", name="Please check your answers")).to_be_visible()
    check(page)
    _shot(page, "guardian-missing-answer", full_page=False)

    page.get_by_role("group", name="Questionnaires at school").get_by_label("Yes, I agree").check()
    page.get_by_role("group", name="Attendance and marks").get_by_label("Yes, I agree").check()
    page.get_by_role("group", name="Interviews and group sessions").get_by_label("No, I do not agree").check()
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your answers")
    check(page)
    _shot(page, "guardian-summary")

    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your receipt")
    expect(page.get_by_role("status")).to_contain_text("Thank you. Your answers are saved.")
    check(page)
    _shot(page, "guardian-receipt")

    # What was agreed, then withdrawing one Yes in two clicks.
    page.goto(f"{families.url}/family/agreed")
    expect(page.get_by_role("heading", level=1)).to_have_text("What you agreed to")
    check(page)
    _shot(page, "guardian-agreed")
    page.get_by_role("link", name=re.compile("^Withdraw.*Attendance and marks")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Do you want to withdraw?")
    check(page)
    _shot(page, "guardian-withdraw")
    page.get_by_role("button", name="Yes, withdraw").click()
    expect(page.get_by_role("status")).to_contain_text("Your withdrawal is saved")
    check(page)
    _shot(page, "guardian-withdrawn", full_page=False)

    # A copy of the data: the answer says by when the project must reply.
    page.goto(f"{families.url}/family")
    page.get_by_role("link", name="Ask for a copy or for erasure of the data").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ask for a copy or for erasure")
    check(page)
    _shot(page, "guardian-request")
    page.get_by_label("A copy of the data").check()
    page.get_by_role("button", name="Send the request").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your request was received")
    expect(page.get_by_role("status")).to_contain_text("The project must answer by")
    check(page)
    _shot(page, "guardian-request-done")
    page.context.close()

    # The same link a second time: it explains why and what to do; nothing decided is lost.
    page = _page(browser, "en-GB")
    page.goto(f"{families.url}/f/{families.english_token}")
    expect(page.get_by_role("heading", level=1)).to_have_text("This link cannot be used")
    expect(page.get_by_role("status")).to_contain_text("This link was already used.")
    check(page)
    _shot(page, "guardian-link-used")

    # A family with a letter types the code; a wrong code says so next to the field.
    page.goto(f"{families.url}/code")
    page.get_by_label("Code").fill("ZZZZZ-ZZZZZ")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#code-error")).to_contain_text("This code does not work.")
    check(page)
    _shot(page, "guardian-code-wrong")
    page.context.close()
