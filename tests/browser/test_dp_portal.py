"""A researcher in a real browser builds a grouped query, watches the accuracy preview follow their
typing, releases it and reads the chart and the table, downloads the CSV; the DPO sees every
project's budget over time. axe-core checks every page visited."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyotp
import pytest

from access.audit.actions import Role
from enclave.components import build_components
from infra.db import session_scope
from infra.settings import load_settings
from tests.dp.test_portal import DATASET, make_project, publish_dataset
from tests.support import browser as browser_support
from tests.support.auth import StaffUser, create_staff
from tests.support.axe import assert_accessible
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, committed_database, serve_product
from tests.support.processes import wait_for_http
from tests.support.screenshots import capture

pytestmark = pytest.mark.browser

TITLE = "Attachment and early school leaving"
START_TIMEOUT = 300


@dataclass
class Server:
    """The product serving on a free port: a published dataset, a researcher's project, the DPO."""

    url: str
    researcher: StaffUser
    dpo: StaffUser
    project_id: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``enclave serve`` in its own process against a database whose data is really committed."""
    url = committed_database("enclave_test_dp_portal_browser")
    data_dir = tmp_path_factory.mktemp("dp-portal-browser-data")
    settings = load_settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
    components = build_components(settings)
    with session_scope(components.session_factory) as session:
        publish_dataset(session, components)
        researcher = create_staff(session, components, roles=[Role.researcher])
        dpo = create_staff(session, components, roles=[Role.dpo])
        project_id = make_project(session, researcher, TITLE, epsilon="2.0")
    components.engine.dispose()

    # The app imports OpenDP (whose prelude loads scikit-learn): on a busy machine it needs more than
    # the helper's default minute to answer its first request.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(browser_support, "wait_for_http", partial(wait_for_http, timeout=START_TIMEOUT))
        with serve_product(url, data_dir) as base:
            yield Server(base, researcher, dpo, project_id)


def _sign_in(page, server: Server, user: StaffUser, path: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}{path}")
    expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    if user.totp_secret:
        page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(user.totp_secret).now())
    page.get_by_role("button", name="Sign in").click()


def test_researcher_previews_releases_and_downloads_a_grouped_mean(server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # bypass_csp lets axe-core be injected; the portal's own script is same-origin.
            context = browser.new_context(accept_downloads=True, locale="en-GB", bypass_csp=True)
            context.set_default_timeout(15_000)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            _sign_in(page, server, server.researcher, "/staff/research")
            expect(page.get_by_role("heading", name="Research portal", level=1)).to_be_visible()
            expect(page.get_by_role("row", name=TITLE)).to_contain_text("2")  # granted ε
            assert_accessible(page)
            capture(page, "researcher-home")

            page.get_by_role("link", name=f"Query {DATASET}").click()
            expect(page.get_by_role("heading", name="Query builder", level=1)).to_be_visible()
            # The script shows only the fields a count uses.
            expect(page.get_by_label("Numeric variable", exact=True)).to_be_hidden()
            assert_accessible(page)
            capture(page, "researcher-builder")

            # A mean of engagement by gender; the preview follows each change without a click.
            preview = page.locator("#preview")
            page.get_by_label("Mean of a numeric variable").check()
            expect(page.get_by_label("Numeric variable", exact=True)).to_be_visible()
            page.get_by_label("Numeric variable", exact=True).select_option("engagement")
            page.get_by_label("gender", exact=True).check()
            page.get_by_label("ε to spend").fill("0.3")
            expect(preview).to_contain_text("This query would spend ε = 0.3")
            expect(preview).to_contain_text("count: ±")
            first = preview.inner_text()
            page.get_by_label("ε to spend").fill("0.6")
            expect(preview).to_contain_text("ε = 0.6")
            assert preview.inner_text() != first  # more ε, a tighter interval
            assert_accessible(page)
            capture(page, "researcher-preview")
            # A variable outside the grant is refused in the preview, naming the field.
            page.get_by_label("Numeric variable", exact=True).select_option("")
            expect(preview).to_contain_text("Numeric variable: choose the numeric variable")
            page.get_by_label("Numeric variable", exact=True).select_option("engagement")
            expect(preview).to_contain_text("ε = 0.6")

            # Release: the result as a chart with error bars and as a table, with the budget.
            page.get_by_role("button", name="Release (spends ε)").click()
            expect(page.get_by_role("heading", name="Result: Mean of engagement by gender")).to_be_visible()
            expect(page.get_by_role("status")).to_contain_text("This release spent ε = 0.6")
            chart = page.get_by_role("img", name="Mean of engagement by gender with 95 % error bars")
            expect(chart).to_be_visible()
            expect(chart.locator("circle")).to_have_count(3)
            table = page.locator("table.results")
            expect(table.locator("tbody tr")).to_have_count(3)
            expect(table.locator("tbody tr").first.locator("th")).to_have_text("female")
            expect(page.locator('[data-budget="spent"]')).to_have_text("0.6")
            expect(page.locator('[data-budget="remaining"]')).to_have_text("1.4")
            assert_accessible(page)
            capture(page, "researcher-result")
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Download the result as CSV").click()
            saved = tmp_path / "result.csv"
            download_info.value.save_as(saved)
            rows = list(csv.DictReader(saved.open()))
            assert [r["gender"] for r in rows] == ["female", "male", "other"]
            assert {"estimate", "accuracy_95", "lower_95", "upper_95", "noise_dominates"} <= set(rows[0])

            # The keyboard alone reaches the builder's fields and buttons.
            page.get_by_role("link", name=f"Ask another question of {DATASET}").click()
            page.get_by_label("Count of students").focus()
            page.keyboard.press("ArrowDown")  # radio group: the next statistic
            expect(page.get_by_label("Sum of a numeric variable")).to_be_checked()
            assert not errors, errors
        finally:
            browser.close()


def test_the_dpo_sees_every_projects_budget_over_time(server: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="en-GB", bypass_csp=True)
            context.set_default_timeout(15_000)
            page = context.new_page()
            _sign_in(page, server, server.dpo, "/staff/budgets")
            expect(page.get_by_role("heading", name="Privacy budgets", level=1)).to_be_visible()
            expect(page.get_by_role("row", name=TITLE)).to_be_visible()
            expect(page.get_by_role("img", name=f"ε spent over time by {TITLE}")).to_be_visible()
            page.get_by_text("Every release's spend").first.click()
            spends = page.locator("table", has=page.locator("caption", has_text=f"Spends of {TITLE}"))
            expect(spends).to_be_visible()
            assert_accessible(page)
            # The researcher's pages are not the DPO's.
            page.goto(f"{server.url}/staff/research")
            expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        finally:
            browser.close()
