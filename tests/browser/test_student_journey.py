"""Students in a real browser, through their own invitation, reading English: a 15-year-old in Spain
decides alone (the age of consent there is 14); a 15-year-old in Bulgaria decides together with the
parents (both answers count from 14 to 17), so their Yes waits for the parent's; a 10-year-old in
Poland types the code of the letter and gives their assent (the parents decide, the child is asked
too). The screenshots are the students' guide's. axe-core checks every page visited."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from access.audit.actions import Role
from access.audit.service import Actor
from consent.forms.service import load_demo_forms
from consent.identity import IdentityProtector
from consent.invitations import service as invitations
from consent.invitations.models import InvitationChannel, InvitationReason, InviteeKind
from enclave.components import build_components
from infra.db import session_scope
from infra.settings import load_settings
from tests.browser.test_family_journeys import born_aged
from tests.support import browser as browser_support
from tests.support.axe import assert_accessible
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, committed_database, serve_product
from tests.support.consent import load_rules, make_guardian, make_student
from tests.support.processes import wait_for_http
from tests.support.screenshots import capture

pytestmark = pytest.mark.browser

START_TIMEOUT = 300


@dataclass
class Students:
    """The product on a free port, with the invitations' secrets of three students."""

    url: str
    spain_token: str
    sofia_token: str
    krakow_code: str


@pytest.fixture(scope="module")
def students(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Students]:
    """``enclave serve`` against a committed database: the demo forms and three invited students."""
    url = committed_database("enclave_test_student_browser")
    data_dir = tmp_path_factory.mktemp("student-browser-data")
    settings = load_settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
    components = build_components(settings)
    keys = components.keys
    with session_scope(components.session_factory) as session:
        load_rules(session)
        load_demo_forms(session, Actor("system", Role.system))
        protector = IdentityProtector(keys)
        issued = {}
        for country, school, age, channel in (
            ("ES", "ES-AND-003", 15, InvitationChannel.email),
            ("BG", "BG-SOF-001", 15, InvitationChannel.email),
            ("PL", "PL-KRK-007", 10, InvitationChannel.letter),
        ):
            year, month = born_aged(age)
            student = make_student(
                session,
                protector,
                country=country,
                school=school,
                language="en",
                birth_year=year,
                birth_month=month,
            )
            make_guardian(session, protector, [student], language="en")
            issued[country] = invitations.issue(
                session,
                keys,
                kind=InviteeKind.student,
                target=student,
                school=school,
                country=country,
                language="en",
                channel=channel,
                reason=InvitationReason.invitation,
            )
        found = Students("", issued["ES"].token, issued["BG"].token, issued["PL"].code)
    components.engine.dispose()

    # On a busy machine the server needs more than the helper's default minute to answer first.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(browser_support, "wait_for_http", partial(wait_for_http, timeout=START_TIMEOUT))
        with serve_product(url, data_dir) as base:
            found.url = base
            yield found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _page(browser: Any) -> Any:
    # axe-core is injected as a script: the pages' Content-Security-Policy would (rightly) refuse it.
    context = browser.new_context(locale="en-GB", bypass_csp=True, viewport={"width": 320, "height": 640})
    context.set_default_timeout(15_000)
    return context.new_page()


def check(page: Any) -> None:
    """No serious accessibility violation, and nothing wider than a 320-pixel phone screen."""
    assert_accessible(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 320, f"{page.url} is {width} px wide"


def shot(page: Any, name: str, *, full_page: bool = True, at: str | None = None) -> None:
    """A screenshot for the students' guide, then back to the phone-sized window."""
    if at is not None:
        # The window the screenshot is taken with, scrolled to what the guide shows.
        page.set_viewport_size({"width": 1100, "height": 800})
        page.locator(at).evaluate("element => element.scrollIntoView({block: 'center'})")
    capture(page, name, full_page=full_page)
    page.set_viewport_size({"width": 320, "height": 640})


def test_a_fifteen_year_old_in_spain_decides_alone_through_their_own_link(
    students: Students, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = _page(browser)
    page.goto(f"{students.url}/f/{students.spain_token}")
    expect(page.get_by_role("heading", level=1)).to_have_text("LET'S CARE: your decisions")
    expect(page.get_by_text("You are here as a student. This is about you.")).to_be_visible()
    expect(page.get_by_text("At your age you decide yourself.")).to_be_visible()
    check(page)
    shot(page, "student-home")

    page.get_by_role("link", name="Read and decide").click()
    expect(
        page.get_by_text("This is your own consent: at your age your answer counts by law.")
    ).to_be_visible()
    check(page)
    shot(page, "student-decide", full_page=False)

    page.get_by_role("group", name="Questionnaires at school").get_by_label("Yes, I agree").check()
    page.get_by_role("group", name="Interviews and group sessions").get_by_label("No, I do not agree").check()
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your answers")
    check(page)
    shot(page, "student-summary")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your receipt")
    expect(page.locator(".facts")).to_contain_text("The student (own consent)")
    check(page)
    shot(page, "student-receipt")

    # Back on the start page the answers are the current status: nobody else needs to answer.
    page.goto(f"{students.url}/family")
    statuses = page.locator("dl.statuses")
    expect(statuses).to_contain_text("Yes, agreed")
    expect(statuses).to_contain_text("No, not agreed")
    page.context.close()


def test_a_fifteen_year_old_in_bulgaria_decides_together_with_the_parents(
    students: Students, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = _page(browser)
    page.goto(f"{students.url}/f/{students.sofia_token}")
    expect(
        page.get_by_text("At your age you decide together with your parents: both answers count.")
    ).to_be_visible()
    check(page)
    page.get_by_role("link", name="Read and decide").click()
    expect(page.get_by_text("This is your own consent")).to_be_visible()
    page.get_by_role("group", name="Questionnaires at school").get_by_label("Yes, I agree").check()
    page.get_by_role("button", name="Continue to the summary").click()
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your receipt")

    # The Yes is saved but is not yet a Yes for the project: the parent's answer is still needed.
    page.goto(f"{students.url}/family")
    expect(page.locator("dl.statuses")).to_contain_text("Your Yes is saved: waiting for the other answer")
    check(page)
    shot(page, "student-joint-waiting")
    page.context.close()


def test_a_ten_year_old_in_poland_types_the_letters_code_and_gives_assent(
    students: Students, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = _page(browser)
    page.goto(f"{students.url}/code")
    expect(page.get_by_role("heading", level=1)).to_have_text("Type the code from your letter")
    check(page)
    typed = f"{students.krakow_code[:5].lower()} {students.krakow_code[5:]}"
    page.get_by_label("Code").fill("abcde 12345")  # the guide shows an example, not a real code
    shot(page, "student-code")
    page.get_by_label("Code").fill(typed)
    page.get_by_role("button", name="Continue").click()
    expect(
        page.get_by_text("Your parents decide, and we also ask you: do you want to take part?")
    ).to_be_visible()
    check(page)
    shot(page, "student-assent-home")

    page.get_by_role("link", name="Read and decide").click()
    expect(page.get_by_text("This is your own answer (your assent).")).to_be_visible()
    check(page)
    shot(page, "student-assent-decide", full_page=False)
    page.get_by_role("button", name="No to everything").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your answers")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your receipt")
    expect(page.locator(".facts")).to_contain_text("The student (assent)")
    check(page)
    shot(page, "student-assent-receipt")
    page.context.close()
