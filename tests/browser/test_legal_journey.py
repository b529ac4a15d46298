"""The legal reviewer in a real browser: signs in, reviews the ledger of one project, downloads the
export with its proofs (checked here as an outside verifier would), verifies the whole ledger, signs
off a range, and sees verification fail once a ledger row was altered behind the product's back.
axe-core checks every page visited; the screenshots are the legal reviewer's guide's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psycopg
import pyotp
import pytest

from access.audit import canonical, merkle
from access.audit.actions import Role
from access.audit.service import SignedCheckpoint
from access.projects import service as projects
from enclave.components import build_components
from infra.db import session_scope
from infra.settings import load_settings
from tests.support import browser as browser_support
from tests.support.auth import StaffUser, create_staff
from tests.support.axe import assert_accessible
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, committed_database, serve_product
from tests.support.processes import wait_for_http
from tests.support.projects import make_principal, proposal
from tests.support.screenshots import capture

pytestmark = pytest.mark.browser

START_TIMEOUT = 300


@dataclass
class Server:
    """The product serving on a free port: a legal reviewer, and a project's entries in the ledger."""

    url: str
    database_url: str
    reviewer: StaffUser
    project_id: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``enclave serve`` in its own process against a database whose data is really committed."""
    url = committed_database("enclave_test_legal_browser")
    data_dir = tmp_path_factory.mktemp("legal-browser-data")
    settings = load_settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
    components = build_components(settings)
    with session_scope(components.session_factory) as session:
        reviewer = create_staff(session, components, roles=[Role.legal_reviewer])
        create_staff(session, components, roles=[Role.dpo])
        researcher = make_principal(session, Role.researcher)
        project = projects.create_project(session, researcher, proposal())
        projects.submit_project(session, researcher, project.id)
        project_id = project.id
    components.engine.dispose()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(browser_support, "wait_for_http", partial(wait_for_http, timeout=START_TIMEOUT))
        with serve_product(url, data_dir) as base:
            yield Server(base, url, reviewer, project_id)


def _tamper(database_url: str) -> None:
    """Alter one ledger row directly in the database, as an intruder with database access would."""
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only")
        connection.execute("UPDATE audit_entry SET target_id = 'someone-else' WHERE seq = 2")
        connection.execute("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only")


def test_legal_reviewer_reviews_exports_verifies_and_signs_off(server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True, locale="en-GB", bypass_csp=True)
            context.set_default_timeout(15_000)
            page = context.new_page()

            page.goto(f"{server.url}/staff/login")
            expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
            page.get_by_label("Email address").fill(server.reviewer.email)
            page.get_by_label("Password").fill(server.reviewer.password)
            assert_accessible(page)
            capture(page, "legal-sign-in")
            page.get_by_label("Code from your authenticator app").fill(
                pyotp.TOTP(server.reviewer.totp_secret).now()
            )
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Audit ledger", level=1)).to_be_visible()
            assert_accessible(page)
            capture(page, "legal-ledger")

            # One project's history: created, then submitted.
            page.get_by_label("Project id").fill(server.project_id)
            page.get_by_role("button", name="Apply filters").click()
            rows = page.locator("table tbody tr")
            expect(rows).to_have_count(2)
            expect(page.locator("table tbody")).to_contain_text("project.submitted")
            assert_accessible(page)
            capture(page, "legal-ledger-filtered")

            # The export of that filter carries a signed checkpoint and a proof for every entry.
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Download JSON").click()
            saved = tmp_path / download_info.value.suggested_filename
            download_info.value.save_as(saved)
            document = json.loads(saved.read_text(encoding="utf-8"))
            checkpoint = SignedCheckpoint.from_json(document["checkpoint"])
            root = bytes.fromhex(checkpoint.root_hash)
            assert [e["action"] for e in document["entries"]] == ["project.created", "project.submitted"]
            for entry in document["entries"]:
                proof = [bytes.fromhex(p) for p in entry["inclusion_proof"]]
                leaf = canonical.entry_leaf(entry["entry_hash"])
                assert merkle.verify_inclusion(entry["leaf_index"], checkpoint.tree_size, leaf, proof, root)

            # The whole ledger verifies; the reviewed range is signed off.
            page.get_by_role("link", name="Verify integrity").click()
            expect(page.get_by_role("status")).to_contain_text("Intact.")
            assert_accessible(page)
            capture(page, "legal-verify-ok")
            page.get_by_role("link", name="Sign-offs").click()
            page.get_by_label("First sequence number").fill("1")
            page.get_by_label("Last sequence number").fill("4")
            page.get_by_label("Comment").fill("Accounts and the first proposal reviewed; nothing to report.")
            page.get_by_role("button", name="Sign off").click()
            expect(page.get_by_role("status")).to_contain_text("Range signed off")
            assert_accessible(page)
            capture(page, "legal-signoff")

            # Someone alters an entry directly in the database: verification names the first bad entry.
            _tamper(server.database_url)
            page.get_by_role("link", name="Verify integrity").click()
            expect(page.get_by_role("alert")).to_contain_text("Problems found.")
            expect(page.get_by_role("alert")).to_contain_text("The first entry concerned is number 2.")
            assert_accessible(page)
            capture(page, "legal-verify-failed")
        finally:
            browser.close()
