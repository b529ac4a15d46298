"""A data steward in a real browser: signs in with an authenticator code, imports a roster with
errors and reads the report row by row, fixes it and imports it, sends a campaign, downloads the
letters and sees the dashboard. axe-core checks every page visited; the screenshots are the stewards'
guide's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pyotp
import pytest

from access.audit.actions import Role
from enclave.components import build_components
from infra.db import session_scope
from infra.settings import load_settings
from tests.support import browser as browser_support
from tests.support.auth import StaffUser, create_staff
from tests.support.axe import assert_accessible
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, committed_database, serve_product
from tests.support.consent import load_rules, make_form
from tests.support.processes import wait_for_http
from tests.support.screenshots import capture

pytestmark = pytest.mark.browser

START_TIMEOUT = 300

SCHOOL = "PL-KRK-007"
YEAR = datetime.now(UTC).year - 11
STUDENTS_HEADER = "student_ref,country,school,stage,class,language,birth_year,birth_month\n"
WITH_ERRORS = STUDENTS_HEADER + (
    f"P-0001,PL,{SCHOOL},2,5B,pl,{YEAR},3\n"
    f"P-0002,PL,{SCHOOL},2,5B,pl,{YEAR},13\n"
    f"P-0003,PL,PL-WAW-001,2,5B,pl,{YEAR},4\n"
)
FIXED = STUDENTS_HEADER + (
    f"P-0001,PL,{SCHOOL},2,5B,pl,{YEAR},3\n"
    f"P-0002,PL,{SCHOOL},2,5B,pl,{YEAR},12\n"
    f"P-0003,PL,{SCHOOL},2,5B,pl,{YEAR},4\n"
)
GUARDIANS = (
    "student_ref,school,name,email,delivery,language,relation\n"
    f"P-0001,{SCHOOL},Anna Nowak,anna.nowak@family.example.org,email,pl,mother\n"
    f"P-0002,{SCHOOL},Jan Kowalski,,school,pl,father\n"
)


@dataclass
class Server:
    """The product serving on a free port, with one steward of a Kraków school."""

    url: str
    steward: StaffUser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``enclave serve`` in its own process against a database whose data is really committed."""
    url = committed_database("enclave_test_steward_browser")
    data_dir = tmp_path_factory.mktemp("steward-browser-data")
    settings = load_settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
    components = build_components(settings)
    with session_scope(components.session_factory) as session:
        load_rules(session)
        make_form(session, "PL", "pl")
        steward = create_staff(session, components, roles=[Role.data_steward], country="PL", schools=[SCHOOL])
    components.engine.dispose()

    # On a busy machine the server needs more than the helper's default minute to answer first.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(browser_support, "wait_for_http", partial(wait_for_http, timeout=START_TIMEOUT))
        with serve_product(url, data_dir) as base:
            yield Server(base, steward)


def _csv(name: str, text: str) -> dict[str, object]:
    return {"name": name, "mimeType": "text/csv", "buffer": text.encode()}


def test_steward_imports_a_roster_sends_a_campaign_and_sees_the_dashboard(
    server: Server, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # bypass_csp lets axe-core be injected; the pages themselves need no script.
            context = browser.new_context(accept_downloads=True, locale="en-GB", bypass_csp=True)
            context.set_default_timeout(15_000)
            page = context.new_page()

            # Opening the console leads to the staff sign-in, and back to the console afterwards.
            page.goto(f"{server.url}/staff/steward")
            expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
            page.get_by_label("Email address").fill(server.steward.email)
            page.get_by_label("Password").fill(server.steward.password)
            capture(page, "steward-sign-in")
            page.get_by_label("Code from your authenticator app").fill(
                pyotp.TOTP(server.steward.totp_secret).now()
            )
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Steward console", level=1)).to_be_visible()
            assert_accessible(page)
            capture(page, "steward-home")

            # A students file with two bad rows: the report names each row, column and reason.
            page.get_by_role("link", name="Rosters").click()
            expect(page.get_by_role("heading", name="Import a roster", level=1)).to_be_visible()
            assert_accessible(page)
            page.get_by_label("Students").check()
            page.get_by_label("CSV file").set_input_files(_csv("students.csv", WITH_ERRORS))
            page.get_by_role("button", name="Check the file").click()
            expect(page.get_by_role("alert")).to_contain_text("The file was not imported.")
            report = page.locator("table", has=page.locator("caption", has_text="Every problem found"))
            rows = report.locator("tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0).locator("th")).to_have_text("3")
            expect(rows.nth(0).locator("td").first).to_have_text("birth_month")
            expect(rows.nth(1).locator("th")).to_have_text("4")
            expect(rows.nth(1)).to_contain_text("outside your scope")
            assert_accessible(page)
            capture(page, "steward-roster-problems")

            # Fixed: the check passes, then the import writes it.
            page.get_by_label("CSV file").set_input_files(_csv("students.csv", FIXED))
            page.get_by_role("button", name="Check the file").click()
            expect(page.get_by_role("status")).to_contain_text("The file is valid")
            capture(page, "steward-roster-valid")
            page.get_by_label("CSV file").set_input_files(_csv("students.csv", FIXED))
            page.get_by_role("button", name="Import").click()
            expect(page.get_by_role("status")).to_contain_text("Imported 3 rows")
            page.get_by_label("Guardians").check()
            page.get_by_label("CSV file").set_input_files(_csv("guardians.csv", GUARDIANS))
            page.get_by_role("button", name="Import").click()
            expect(page.get_by_role("status")).to_contain_text("Imported 2 rows")
            assert_accessible(page)
            capture(page, "steward-roster-imported")

            # Send the invitations for the school.
            page.get_by_role("link", name="Campaigns").click()
            expect(page.get_by_role("heading", name="Campaigns", level=1)).to_be_visible()
            assert_accessible(page)
            capture(page, "steward-campaigns")
            page.get_by_label("School").select_option(SCHOOL)
            page.get_by_label("Invitation: everyone who still has something to decide").check()
            page.get_by_role("button", name="Send").click()
            expect(page.get_by_role("heading", name=f"Campaign for {SCHOOL}")).to_be_visible()
            # One guardian by email; the other guardian and the three 11-year-olds by letter.
            expect(page.get_by_role("status")).to_contain_text("1 emails queued, 4 letters to print")
            assert_accessible(page)
            capture(page, "steward-campaign-sent")
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Download the 4 letters (PDF)").click()
            saved = tmp_path / "letters.pdf"
            download_info.value.save_as(saved)
            assert saved.read_bytes().startswith(b"%PDF")

            # The dashboard of the school: everyone invited, nobody has answered yet.
            page.get_by_role("link", name="Dashboard").click()
            expect(page.get_by_role("heading", name=f"Dashboard: {SCHOOL}", level=1)).to_be_visible()
            expect(page.get_by_role("img", name=f"Consent status per purpose at {SCHOOL}")).to_be_visible()
            table = page.locator("table", has=page.locator("caption", has_text="Students per purpose"))
            expect(table.locator("tbody tr").first.locator("td").nth(3)).to_have_text("3")  # pending
            facts = page.locator("dl.facts")
            expect(facts).to_contain_text("Students invited (themselves or a guardian)")
            assert_accessible(page)
            capture(page, "steward-dashboard")

            # The campaigns page lists the campaign with its counts.
            page.get_by_role("link", name="Campaigns").click()
            expect(page.locator("table tbody tr")).to_have_count(1)
            expect(page.locator("table tbody tr").first).to_contain_text(SCHOOL)
        finally:
            browser.close()
