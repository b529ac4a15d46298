"""The DPO in a real browser: signs in, sees what waits, refuses then approves a proposal with terms,
is told a large budget needs a second approver, works the data-subject request queue (extend once,
complete the overdue one), looks at the privacy budgets, reviews the ledger and signs off a range.
axe-core checks every page visited; the screenshots are the DPO guide's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import pyotp
import pytest

from access.audit.actions import Role
from access.principal import Principal
from access.projects import service as projects
from consent.identity import IdentityProtector
from consent.requests import service as requests
from consent.requests.deadlines import utc_today
from consent.requests.schemas import RequestCreate
from enclave.components import build_components
from infra.db import session_scope
from infra.settings import load_settings
from tests.support import browser as browser_support
from tests.support.auth import StaffUser, create_staff
from tests.support.axe import assert_accessible
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, committed_database, serve_product
from tests.support.consent import make_student
from tests.support.processes import wait_for_http
from tests.support.projects import make_principal, proposal
from tests.support.screenshots import capture

pytestmark = pytest.mark.browser

START_TIMEOUT = 300
SMALL = "Attachment and early school leaving in lower secondary"
LARGE = "Wellbeing across the four stages, by country"


@dataclass
class Server:
    """The product serving on a free port: a DPO, two submitted proposals and two requests."""

    url: str
    dpo: StaffUser
    recent_request: str
    overdue_request: str


def _request(session, protector: IdentityProtector, dpo: StaffUser, days_ago: int, note: str) -> str:
    principal = Principal(account_id=dpo.account_id, roles=frozenset({Role.dpo}))
    student = make_student(session, protector)
    body = RequestCreate.model_validate(
        {
            "kind": "access",
            "subject_kind": "student",
            "subject_id": student.subject_id,
            "requested_by": "guardian",
            "language": "bg",
            "received_on": (utc_today() - timedelta(days=days_ago)).isoformat(),
            "details": {"note": note},
        }
    )
    return requests.create_request(session, principal, protector, body).id


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``enclave serve`` in its own process against a database whose data is really committed."""
    url = committed_database("enclave_test_dpo_browser")
    data_dir = tmp_path_factory.mktemp("dpo-browser-data")
    settings = load_settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
    components = build_components(settings)
    with session_scope(components.session_factory) as session:
        dpo = create_staff(session, components, roles=[Role.dpo])
        researcher = make_principal(session, Role.researcher)
        for title, epsilon in ((SMALL, "1.5"), (LARGE, "3")):
            project = projects.create_project(
                session, researcher, proposal(title=title, requested_epsilon=epsilon)
            )
            projects.submit_project(session, researcher, project.id)
        protector = IdentityProtector(components.keys)
        overdue = _request(session, protector, dpo, 40, "Letter from the mother, received at school.")
        recent = _request(session, protector, dpo, 3, "Email from the father.")
    components.engine.dispose()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(browser_support, "wait_for_http", partial(wait_for_http, timeout=START_TIMEOUT))
        with serve_product(url, data_dir) as base:
            yield Server(base, dpo, recent, overdue)


def test_dpo_reviews_projects_answers_requests_and_signs_off_the_ledger(server: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # bypass_csp lets axe-core be injected; the pages themselves need no script.
            context = browser.new_context(locale="en-GB", bypass_csp=True)
            context.set_default_timeout(15_000)
            page = context.new_page()

            page.goto(f"{server.url}/staff/dpo")
            expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
            page.get_by_label("Email address").fill(server.dpo.email)
            page.get_by_label("Password").fill(server.dpo.password)
            page.get_by_label("Code from your authenticator app").fill(
                pyotp.TOTP(server.dpo.totp_secret).now()
            )
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="DPO home", level=1)).to_be_visible()
            expect(page.get_by_role("alert")).to_contain_text("1 request is overdue")
            assert_accessible(page)
            capture(page, "dpo-home")

            # The proposal: more than was asked is refused with a message at the field.
            page.get_by_role("link", name=SMALL).click()
            expect(page.get_by_role("heading", name=SMALL, level=1)).to_be_visible()
            assert_accessible(page)
            capture(page, "dpo-project-review")
            page.get_by_label("Privacy budget (ε)").fill("5")
            page.get_by_role("button", name="Approve").click()
            expect(page.get_by_role("alert")).to_contain_text("The approval was not recorded.")
            expect(page.get_by_role("alert")).to_contain_text("exceeds the requested 1.5")
            assert_accessible(page)
            capture(page, "dpo-approve-error")

            # Approve with less: ε 1.0 and without the teachers' dataset.
            page.get_by_label("Privacy budget (ε)").fill("1.0")
            page.get_by_label("wave1_teachers", exact=True).uncheck()
            page.get_by_label("wave1_teachers.years_experience").uncheck()
            page.get_by_role("button", name="Approve").click()
            expect(page.get_by_role("status")).to_contain_text("Approved.")
            expect(page.locator("dl.facts")).to_contain_text("active")
            assert_accessible(page)
            capture(page, "dpo-project-approved")

            # A budget above the threshold: the first approval is recorded, a second approver is needed.
            page.get_by_role("link", name="Projects", exact=True).click()
            expect(page.get_by_role("heading", name="Projects", level=1)).to_be_visible()
            assert_accessible(page)
            capture(page, "dpo-projects")
            page.get_by_role("link", name=LARGE).click()
            page.get_by_label("Privacy budget (ε)").fill("2.5")
            page.get_by_role("button", name="Approve").click()
            expect(page.get_by_role("status")).to_contain_text("Your approval is recorded.")
            expect(page.get_by_role("heading", name="A second approver is still needed")).to_be_visible()
            expect(page.get_by_role("button", name="Approve")).to_have_count(0)
            assert_accessible(page)
            capture(page, "dpo-second-approver")

            # The request queue: the overdue request first, with its deadline.
            page.get_by_role("link", name="Requests", exact=True).click()
            expect(page.get_by_role("heading", name="Data-subject requests", level=1)).to_be_visible()
            rows = page.locator("section", has=page.get_by_role("heading", name="Waiting (2)")).locator(
                "tbody tr"
            )
            expect(rows).to_have_count(2)
            expect(rows.first).to_contain_text("overdue")
            assert_accessible(page)
            capture(page, "dpo-requests")

            # The recent request needs more time: extended once, with the reason the family is told.
            page.locator(f'a[href="/staff/dpo/requests/{server.recent_request}"]').click()
            expect(page.get_by_role("heading", name="Access request", level=1)).to_be_visible()
            page.get_by_label("Extend by").select_option("1")
            page.get_by_label("Reason for the extension").fill(
                "The school holds part of the records on paper; we need a few more weeks to collect them."
            )
            assert_accessible(page)
            capture(page, "dpo-request-extend")
            page.get_by_role("button", name="Extend deadline").click()
            expect(page.get_by_role("status")).to_contain_text("Deadline extended.")
            expect(page.get_by_text("It cannot be extended again.")).to_be_visible()

            # The overdue one is answered now and closed.
            page.get_by_role("link", name="All requests").click()
            page.locator(f'a[href="/staff/dpo/requests/{server.overdue_request}"]').click()
            expect(page.get_by_text("This request is overdue")).to_be_visible()
            page.get_by_label("How the request was answered (optional)").fill(
                "Export sent by registered post; late because the letter was forwarded by the school."
            )
            page.get_by_role("button", name="Complete request").click()
            expect(page.get_by_role("status")).to_contain_text("Request completed and closed.")
            assert_accessible(page)
            capture(page, "dpo-request-completed")

            # The privacy budgets: the approved project with its grant.
            page.get_by_role("link", name="Privacy budgets").click()
            expect(page.get_by_role("heading", name="Privacy budgets", level=1)).to_be_visible()
            expect(page.locator("table").first).to_contain_text(SMALL)
            assert_accessible(page)
            capture(page, "dpo-budgets")

            # The ledger: the approval is there; a range is signed off.
            page.goto(f"{server.url}/staff/dpo")
            page.get_by_role("link", name="Audit ledger").first.click()
            expect(page.get_by_role("heading", name="Audit ledger", level=1)).to_be_visible()
            page.get_by_label("Action").fill("project.approved")
            page.get_by_role("button", name="Apply filters").click()
            # Two entries: the approval, and the refused attempt with ε 5 (refusals are recorded too).
            rows = page.locator("table tbody tr")
            expect(rows).to_have_count(2)
            expect(page.locator("table tbody")).to_contain_text("denied")
            assert_accessible(page)
            capture(page, "dpo-ledger")
            page.get_by_role("link", name="Sign-offs").click()
            page.get_by_label("First sequence number").fill("1")
            page.get_by_label("Last sequence number").fill("5")
            page.get_by_label("Comment").fill("Reviewed: accounts and proposals of the week.")
            page.get_by_role("button", name="Sign off").click()
            expect(page.get_by_role("status")).to_contain_text("Range signed off")
            assert_accessible(page)
            capture(page, "dpo-signoff")
        finally:
            browser.close()
