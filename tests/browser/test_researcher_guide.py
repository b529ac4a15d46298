"""What the researchers' guide shows beyond the portal's own journey (``test_dp_portal.py``), in a
real browser: the ε a target accuracy needs, the same question asked again at no cost, a
noise-dominated result, and a release refused because the budget is spent. axe-core checks every
page visited; the screenshots are the guide's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

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

TITLE = "Belonging at school and early leaving"
START_TIMEOUT = 300


@dataclass
class Server:
    """The product serving on a free port: a published dataset and a researcher's project (ε = 1)."""

    url: str
    researcher: StaffUser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``enclave serve`` in its own process against a database whose data is really committed."""
    url = committed_database("enclave_test_researcher_guide_browser")
    data_dir = tmp_path_factory.mktemp("researcher-guide-browser-data")
    settings = load_settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
    components = build_components(settings)
    with session_scope(components.session_factory) as session:
        publish_dataset(session, components)
        researcher = create_staff(session, components, roles=[Role.researcher])
        make_project(session, researcher, TITLE, epsilon="1.0")
    components.engine.dispose()

    # The app imports OpenDP: on a busy machine it needs more than the helper's default minute.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(browser_support, "wait_for_http", partial(wait_for_http, timeout=START_TIMEOUT))
        with serve_product(url, data_dir) as base:
            yield Server(base, researcher)


def test_a_target_accuracy_a_free_repeat_a_noisy_result_and_an_empty_budget(
    server: Server,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # bypass_csp lets axe-core be injected; the portal's own script is same-origin.
            context = browser.new_context(
                locale="en-GB", bypass_csp=True, viewport={"width": 1100, "height": 800}
            )
            context.set_default_timeout(20_000)
            page = context.new_page()

            page.goto(f"{server.url}/staff/research")
            page.get_by_label("Email address").fill(server.researcher.email)
            page.get_by_label("Password").fill(server.researcher.password)
            if server.researcher.totp_secret:  # researchers need no second factor unless given one
                page.get_by_label("Code from your authenticator app").fill(
                    pyotp.TOTP(server.researcher.totp_secret).now()
                )
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Research portal", level=1)).to_be_visible()

            page.get_by_role("link", name=f"Query {DATASET}").click()
            expect(page.get_by_role("heading", name="Query builder", level=1)).to_be_visible()

            # A count by gender with a target accuracy: the preview says which ε it needs.
            preview = page.locator("#preview")
            page.get_by_label("Count of students").check()
            page.get_by_label("gender", exact=True).check()
            page.get_by_label("Spend what a target accuracy needs").check()
            page.get_by_label("Target accuracy (± at 95 %)").fill("10")
            expect(preview).to_contain_text("This query would spend ε =")
            expect(preview).to_contain_text("count: ±")
            assert_accessible(page)
            capture(page, "researcher-accuracy", full_page=False)

            # Released at a fixed ε = 0.3.
            page.get_by_label("Spend a fixed ε").check()
            page.get_by_label("ε to spend").fill("0.3")
            expect(preview).to_contain_text("This query would spend ε = 0.3")
            page.get_by_role("button", name="Release (spends ε)").click()
            expect(page.get_by_role("status")).to_contain_text("This release spent ε = 0.3")
            expect(page.locator('[data-budget="remaining"]')).to_have_text("0.7")

            # The same question again: the stored result, at no cost.
            page.get_by_role("link", name=f"Ask another question of {DATASET}").click()
            page.get_by_label("Count of students").check()
            page.get_by_label("gender", exact=True).check()
            page.get_by_label("Spend a fixed ε").check()
            page.get_by_label("ε to spend").fill("0.3")
            expect(preview).to_contain_text("This query would spend ε = 0.3")
            page.get_by_role("button", name="Release (spends ε)").click()
            expect(page.get_by_role("status")).to_contain_text("the stored result was returned at no cost")
            expect(page.locator('[data-budget="remaining"]')).to_have_text("0.7")
            assert_accessible(page)
            capture(page, "researcher-reused", full_page=False)

            # A count by gender at a tiny ε: the noise swamps the counts, and the page says so.
            page.get_by_role("link", name=f"Ask another question of {DATASET}").click()
            page.get_by_label("Count of students").check()
            page.get_by_label("gender", exact=True).check()
            page.get_by_label("ε to spend").fill("0.01")
            expect(preview).to_contain_text("ε = 0.01")
            page.get_by_role("button", name="Release (spends ε)").click()
            expect(page.get_by_text("are dominated by noise")).to_be_visible()
            expect(page.locator("table.results")).to_contain_text("Noise dominates")
            assert_accessible(page)
            capture(page, "researcher-noise")

            # More than what is left: refused before anything is spent.
            page.get_by_role("link", name=f"Ask another question of {DATASET}").click()
            page.get_by_label("Count of students").check()
            page.get_by_label("ε to spend").fill("0.9")
            expect(preview).to_contain_text("More than the remaining budget")
            page.get_by_role("button", name="Release (spends ε)").click()
            expect(page.get_by_role("alert")).to_contain_text("Budget exhausted.")
            expect(page.locator('[data-budget="remaining"]')).to_have_text("0.69")
            assert_accessible(page)
            capture(page, "researcher-budget-exhausted")
        finally:
            browser.close()
