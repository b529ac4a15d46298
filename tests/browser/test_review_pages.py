"""A DPO reviews the audit trail in a real browser: signs in with a password and an authenticator
code, filters the ledger, downloads the export and signs off a range."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from access.audit.actions import Role
from enclave.components import build_components
from infra.db import session_scope
from infra.settings import load_settings
from tests.support.auth import StaffUser, create_staff
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, committed_database, serve_product

pytestmark = pytest.mark.browser


@dataclass
class Server:
    """The product serving on a free port, with one DPO account in its committed database."""

    url: str
    dpo: StaffUser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``enclave serve`` in its own process against a database whose data is really committed."""
    url = committed_database("enclave_test_browser")
    data_dir = tmp_path_factory.mktemp("browser-data")
    settings = load_settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
    components = build_components(settings)
    with session_scope(components.session_factory) as session:
        dpo = create_staff(session, components, roles=[Role.dpo])
        # A second reviewer's account gives the ledger entries of more than one actor to filter.
        create_staff(session, components, roles=[Role.legal_reviewer])
    components.engine.dispose()

    with serve_product(url, data_dir) as base:
        yield Server(base, dpo)


def test_dpo_signs_in_filters_exports_and_signs_off(server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True, locale="en-GB")
            context.set_default_timeout(10_000)
            page = context.new_page()

            # Opening the ledger first leads to the sign-in form, and back to the ledger afterwards.
            page.goto(f"{server.url}/staff/audit")
            expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
            page.get_by_label("Email address").fill(server.dpo.email)
            page.get_by_label("Password").fill(server.dpo.password)
            page.get_by_label("Code from your authenticator app").fill(
                pyotp.TOTP(server.dpo.totp_secret).now()
            )
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Audit ledger", level=1)).to_be_visible()
            assert page.url.endswith("/staff/audit")

            # Filter to the account creations: one row per account, nothing else.
            page.get_by_label("Action").fill("account.created")
            page.get_by_role("button", name="Apply filters").click()
            rows = page.locator("table tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.first.locator("td").nth(3)).to_have_text("account.created")
            assert "action=account.created" in page.url

            # The CSV export of the same filter holds the same entries, with proofs.
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Download CSV").click()
            download = download_info.value
            assert download.suggested_filename.endswith(".csv")
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
            with saved.open(newline="", encoding="utf-8") as handle:
                exported = list(csv.DictReader(handle))
            assert [r["action"] for r in exported] == ["account.created", "account.created"]
            assert all(r["inclusion_proof"] and r["checkpoint_signature"] for r in exported)

            # Sign off the first two entries.
            page.get_by_role("link", name="Sign-offs").click()
            expect(page.get_by_role("heading", name="Sign-offs", level=1)).to_be_visible()
            page.get_by_label("First sequence number").fill("1")
            page.get_by_label("Last sequence number").fill("2")
            page.get_by_label("Comment").fill("Both accounts were created by the enclave itself.")
            page.get_by_role("button", name="Sign off").click()
            expect(page.get_by_role("status")).to_contain_text("Range signed off")
            past = page.locator("section", has=page.get_by_role("heading", name="Past sign-offs"))
            expect(past.locator("tbody tr")).to_have_count(1)
            expect(past.locator("tbody tr").first).to_contain_text("1–2")
            expect(past.locator("tbody tr").first).to_contain_text("Both accounts were created")

            # The verification page confirms the ledger, sign-off and all, is intact.
            page.get_by_role("link", name="Verify integrity").click()
            expect(page.get_by_role("status")).to_contain_text("Intact.")
        finally:
            browser.close()
