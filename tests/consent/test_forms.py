"""Consent forms: the file format, publication rules, hashes, the shipped demo set and the ledger."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from access.audit.actions import Role
from access.audit.models import AuditEntry
from consent.exceptions import InvalidCountryRule
from consent.forms import service
from consent.forms.exceptions import FormTooLarge, FormVersionConflict, InvalidForm
from consent.forms.models import ConsentForm, ConsentFormPurpose, ConsentFormText
from consent.forms.rendering import AUDIENCE_ORDER, render_text
from tests.support.consent import ALL_PURPOSES, load_rules
from tests.support.projects import make_principal

AUDIENCES = ("guardian", "child", "adult")
DEMO_SET = {
    ("BE", "en"),
    ("BE", "fr"),
    ("BE", "nl"),
    ("BG", "bg"),
    ("BG", "en"),
    ("ES", "en"),
    ("ES", "es"),
    ("PL", "en"),
    ("PL", "pl"),
}


def form_source(
    country: str = "BG",
    language: str = "bg",
    version: int = 1,
    *,
    purposes: Iterable[str] = ALL_PURPOSES,
    required: Iterable[str] = ("questionnaires",),
    wording: Mapping[tuple[str, str], str] | None = None,
    title: str = "Consent form",
) -> str:
    """A valid form file; ``wording[(audience, purpose)]`` replaces one section's sentence."""
    purposes = list(purposes)
    required = set(required)
    wording = wording or {}
    lines = ["---", f"country: {country}", f"language: {language}", f"version: {version}", "purposes:"]
    lines += [f"  {p}: {{required: {'true' if p in required else 'false'}}}" for p in purposes]
    lines.append("---")
    for audience in AUDIENCES:
        lines += [
            "",
            f"<!-- audience: {audience} -->",
            f"# {title} for the {audience}, {country}/{language} (v{version})",
            "",
        ]
        lines.append(f"Who we are and why we ask, told to the {audience}.")
        for purpose in purposes:
            sentence = wording.get((audience, purpose), f"What {purpose} means, told to the {audience}.")
            lines += ["", f"<!-- purpose: {purpose} -->", f"## {purpose}", "", sentence]
        lines += ["", "<!-- general -->", "## Contact", "", "Write to dpo@letscare.example at any time."]
    return "\n".join(lines) + "\n"


def form_bytes(*args, **kwargs) -> bytes:
    """``form_source`` encoded as UTF-8."""
    return form_source(*args, **kwargs).encode()


@pytest.fixture
def dpo(db_session):
    load_rules(db_session)
    return make_principal(db_session, Role.dpo)


def publish(session, principal, content: bytes, name: str = "form.md"):
    return service.publish_form(session, principal.actor, content, name)


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def _ledger(session, action=service.FORM_PUBLISHED):
    session.commit()
    return list(
        session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq))
    )


def test_every_demo_form_loads_with_three_texts_and_six_unbundled_purposes(db_session, dpo):
    published = service.load_demo_forms(db_session, dpo.actor)
    assert len(published) == len(service.form_files(service.DEMO_FORMS_DIR)) == len(DEMO_SET)
    assert all(p.created for p in published)
    assert {(p.form.country_code, p.form.language) for p in published} == DEMO_SET
    for form in (p.form for p in published):
        assert form.version == 1
        assert sorted(t.audience for t in form.texts) == ["adult", "child", "guardian"]
        assert {p.purpose: p.required for p in form.purposes} == {
            code: code == "questionnaires" for code in ALL_PURPOSES
        }
        for text in form.texts:
            assert text.title.startswith("LET'S CARE")
            assert "dpo@letscare.example" in text.rendered_html
            for code in ALL_PURPOSES:
                assert f'<section class="consent-purpose" data-purpose="{code}">' in text.rendered_html


def test_each_text_hash_is_the_sha256_of_its_exact_stored_html(db_session, dpo):
    form = publish(db_session, dpo, form_bytes()).form
    db_session.expire_all()
    stored = service.get_form(db_session, form.id)
    hashes = {}
    for text in stored.texts:
        assert text.sha256 == hashlib.sha256(text.rendered_html.encode("utf-8")).hexdigest()
        again = render_text(text.audience, text.markdown)  # the stored source renders to the stored HTML
        assert (again.html, again.title) == (text.rendered_html, text.title)
        hashes[text.audience] = text.sha256
    assert [a.value for a in AUDIENCE_ORDER] == ["adult", "child", "guardian"]
    expected = hashlib.sha256("".join(hashes[a] for a in ("adult", "child", "guardian")).encode()).hexdigest()
    assert stored.sha256 == expected
    assert service.form_by_sha256(db_session, stored.sha256.upper()) is stored
    assert service.text_for(stored, "child").audience == "child"


def test_reloading_the_demo_forms_changes_nothing(db_session, dpo):
    first = service.load_demo_forms(db_session, dpo.actor)
    rows = (
        _count(db_session, ConsentForm),
        _count(db_session, ConsentFormText),
        _count(db_session, ConsentFormPurpose),
    )
    entries = len(_ledger(db_session))
    again = service.load_demo_forms(db_session, dpo.actor)
    assert [p.form.id for p in again] == [p.form.id for p in first]
    assert not any(p.created for p in again)
    assert (
        _count(db_session, ConsentForm),
        _count(db_session, ConsentFormText),
        _count(db_session, ConsentFormPurpose),
    ) == rows
    assert len(_ledger(db_session)) == entries == len(DEMO_SET)


def test_a_different_text_under_a_published_version_is_a_conflict_naming_the_existing_hash(db_session, dpo):
    first = publish(db_session, dpo, form_bytes()).form
    changed = form_bytes(wording={("child", "interviews"): "We record your voice and then delete it."})
    with pytest.raises(FormVersionConflict) as caught:
        publish(db_session, dpo, changed)
    assert caught.value.code == "version_taken"
    assert first.sha256 in caught.value.detail
    assert caught.value.extra["existing_sha256"] == first.sha256
    assert _count(db_session, ConsentForm) == 1


def test_other_required_flags_under_a_published_version_are_a_conflict(db_session, dpo):
    publish(db_session, dpo, form_bytes())
    with pytest.raises(FormVersionConflict) as caught:
        publish(db_session, dpo, form_bytes(required=("questionnaires", "recontact")))
    assert caught.value.code == "version_taken"


def test_a_version_below_the_latest_is_a_conflict(db_session, dpo):
    publish(db_session, dpo, form_bytes(version=2))
    with pytest.raises(FormVersionConflict) as caught:
        publish(db_session, dpo, form_bytes(version=1))
    assert caught.value.code == "version_not_increasing"
    assert [f.version for f in service.list_forms(db_session, country="bg", language="BG")] == [2]


def test_a_new_version_must_change_the_wording(db_session, dpo):
    publish(db_session, dpo, form_bytes(title="Same"))
    source = form_source(title="Same").replace("version: 1", "version: 2")
    with pytest.raises(FormVersionConflict) as caught:
        publish(db_session, dpo, source.encode())
    assert caught.value.code == "same_text_published"


def test_changing_one_purpose_wording_changes_that_purpose_hash_only(db_session, dpo):
    first = publish(db_session, dpo, form_bytes(version=1)).form
    second = publish(
        db_session,
        dpo,
        form_bytes(version=2, wording={("child", "interviews"): "We record your voice, then delete it."}),
    ).form
    before = {p.purpose: p.section_sha256 for p in first.purposes}
    after = {p.purpose: p.section_sha256 for p in second.purposes}
    assert {code for code in ALL_PURPOSES if before[code] != after[code]} == {"interviews"}
    assert first.sha256 != second.sha256


def test_rewrapping_lines_keeps_every_purpose_hash(db_session, dpo):
    sentence = "A long sentence about recontact that an author may wrap differently later."
    first = publish(
        db_session, dpo, form_bytes(version=1, wording={("guardian", "recontact"): sentence})
    ).form
    wrapped = sentence.replace(" that ", "\nthat   ")
    second = publish(
        db_session, dpo, form_bytes(version=2, wording={("guardian", "recontact"): wrapped})
    ).form
    assert {p.purpose: p.section_sha256 for p in first.purposes} == {
        p.purpose: p.section_sha256 for p in second.purposes
    }


def test_raw_html_reaches_families_as_text_never_as_markup(db_session, dpo):
    evil = '<script>alert("x")</script> and [a link](javascript:alert(1)) <img src=x onerror=alert(1)>'
    form = publish(db_session, dpo, form_bytes(wording={("guardian", "questionnaires"): evil})).form
    html = service.text_for(form, "guardian").rendered_html
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript:' not in html


def test_current_form_is_the_latest_version_published_by_that_instant(db_session, dpo):
    first = publish(db_session, dpo, form_bytes(version=1)).form
    second = publish(db_session, dpo, form_bytes(version=3)).form
    assert second.published_at > first.published_at
    on = first.published_at
    assert service.current_form(db_session, "BG", "bg", on - timedelta(microseconds=1)) is None
    assert service.current_form(db_session, "BG", "bg", on) is first
    assert (
        service.current_form(db_session, "BG", "bg", second.published_at - timedelta(microseconds=1)) is first
    )
    assert service.current_form(db_session, "bg", "BG", second.published_at) is second
    naive_utc = second.published_at.astimezone(UTC).replace(tzinfo=None)
    assert service.current_form(db_session, "BG", "bg", naive_utc) is second
    assert service.current_form(db_session, "BG", "en", second.published_at) is None


def test_the_database_refuses_to_change_a_published_form(db_session, dpo):
    form = publish(db_session, dpo, form_bytes()).form
    for statement in (
        update(ConsentForm).where(ConsentForm.id == form.id).values(version=9),
        update(ConsentFormText)
        .where(ConsentFormText.form_id == form.id)
        .values(rendered_html="<p>changed</p>"),
        update(ConsentFormPurpose).where(ConsentFormPurpose.form_id == form.id).values(required=True),
    ):
        with pytest.raises(DBAPIError, match="append-only"), db_session.begin_nested():
            db_session.execute(statement)
    db_session.expire_all()
    assert service.get_form(db_session, form.id).version == 1


def test_publication_is_in_the_ledger_with_hashes_and_flags_but_no_text(db_session, dpo):
    form = publish(db_session, dpo, form_bytes(), name="bulgarian form.md").form
    texts = {t.audience: t for t in form.texts}
    [entry] = _ledger(db_session)
    assert (entry.actor_id, entry.target_type, entry.target_id) == (
        dpo.account_id,
        "consent_form",
        str(form.id),
    )
    details = entry.details
    assert (details["country"], details["language"], details["version"]) == ("BG", "bg", 1)
    assert details["form_sha256"] == form.sha256
    assert details["child_sha256"] == texts["child"].sha256
    assert details["purposes"] == [
        {"purpose": code, "required": code == "questionnaires"} for code in ALL_PURPOSES
    ]
    flat = repr(details)
    for text in ("bulgarian form", "dpo@", "told to"):
        assert text not in flat


BadInput = Callable[[str], str]
BAD_INPUTS: list[tuple[str, BadInput, str]] = [
    ("unknown purpose", lambda s: s.replace("  recontact:", "  marketing:"), "unknown_purpose"),
    (
        "listed purpose without a section for one audience",
        lambda s: s.replace(
            "<!-- purpose: recontact -->\n## recontact\n\nWhat recontact means, told to the child.", "", 1
        ),
        "missing_section",
    ),
    (
        "section for an unlisted purpose",
        lambda s: s.replace("  consortium_sharing: {required: false}\n", ""),
        "unlisted_purpose",
    ),
    (
        "missing audience",
        lambda s: s.replace("<!-- audience: adult -->", "<!-- general -->"),
        "missing_audience",
    ),
    (
        "unknown audience",
        lambda s: s.replace("<!-- audience: adult -->", "<!-- audience: teacher -->"),
        "unknown_audience",
    ),
    (
        "empty text",
        lambda s: s[: s.index("<!-- audience: adult -->")] + "<!-- audience: adult -->\n",
        "empty_text",
    ),
    (
        "empty purpose section",
        lambda s: s.replace("## interviews\n\nWhat interviews means, told to the guardian.", "   "),
        "empty_section",
    ),
    (
        "two sections for one purpose",
        lambda s: s.replace("<!-- purpose: recontact -->", "<!-- purpose: interviews -->", 1),
        "duplicate_section",
    ),
    ("bad country code", lambda s: s.replace("country: BG", "country: XX"), "unknown_country"),
    (
        "country without a rule",
        lambda s: s.replace("country: BG", "country: US").replace("language: bg", "language: en"),
        "no_country_rule",
    ),
    (
        "unquoted NO read as a boolean",
        lambda s: s.replace("country: BG", "country: NO").replace("language: bg", "language: en"),
        "invalid_country",
    ),
    ("bad language code", lambda s: s.replace("language: bg", "language: xx"), "unknown_language"),
    (
        "language not spoken in the country",
        lambda s: s.replace("language: bg", "language: fr"),
        "language_not_allowed",
    ),
    ("bad YAML", lambda s: s.replace("version: 1", "version: [1"), "bad_yaml"),
    (
        "front matter not a mapping",
        lambda s: "---\n- a list\n---\n" + s.split("---\n", 2)[2],
        "front_matter_not_mapping",
    ),
    ("no front matter", lambda s: s.split("---\n", 2)[2], "missing_front_matter"),
    ("version zero", lambda s: s.replace("version: 1", "version: 0"), "invalid_version"),
    ("version as text", lambda s: s.replace("version: 1", "version: '1'"), "invalid_version"),
    ("version not whole", lambda s: s.replace("version: 1", "version: 1.5"), "invalid_version"),
    (
        "required not a boolean",
        lambda s: s.replace("recontact: {required: false}", "recontact: {required: maybe}"),
        "invalid_purposes",
    ),
    (
        "unknown front matter field",
        lambda s: s.replace("version: 1", "version: 1\nauthor: someone"),
        "invalid_author",
    ),
    (
        "valid_until in the past",
        lambda s: s.replace("version: 1", "version: 1\nvalid_until: 2020-01-31"),
        "valid_until_past",
    ),
    (
        "valid_until not a date",
        lambda s: s.replace("version: 1", "version: 1\nvalid_until: soon"),
        "invalid_valid_until",
    ),
    (
        "special category required",
        lambda s: s.replace("special_category: {required: false}", "special_category: {required: true}"),
        "special_category_required",
    ),
    (
        "raw HTML comment",
        lambda s: s.replace("## Contact", "<!-- note to self -->\n## Contact", 1),
        "unknown_marker",
    ),
    (
        "text before the first audience",
        lambda s: s.replace("---\n\n<!-- audience: guardian -->", "---\nIntro.\n<!-- audience: guardian -->"),
        "text_outside_audience",
    ),
    (
        "text without a title",
        lambda s: s.replace("# Consent form for the child, BG/bg (v1)", "Consent form for the child"),
        "missing_title",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "reason"), [(m, r) for _, m, r in BAD_INPUTS], ids=[n for n, _, _ in BAD_INPUTS]
)
def test_a_bad_form_file_is_refused_with_its_reason_and_nothing_is_stored(db_session, dpo, mutate, reason):
    source = mutate(form_source())
    assert source != form_source()
    with pytest.raises((InvalidForm, InvalidCountryRule)) as caught:
        publish(db_session, dpo, source.encode())
    assert caught.value.status_code == 422
    assert caught.value.extra["reason"] == reason
    assert caught.value.extra["errors"][0]["field"]
    assert _count(db_session, ConsentForm) == 0
    assert _ledger(db_session) == []


def test_a_file_that_is_not_utf8_is_refused(db_session, dpo):
    with pytest.raises(InvalidForm) as caught:
        publish(db_session, dpo, form_source().encode("utf-16"))
    assert caught.value.extra["reason"] == "not_utf8"
    latin = form_source(wording={("child", "interviews"): "Café"}).encode("latin-1")
    with pytest.raises(InvalidForm, match="UTF-8"):
        publish(db_session, dpo, latin)
    assert _count(db_session, ConsentForm) == 0


def test_a_file_over_256_kib_is_refused_before_parsing(db_session, dpo, tmp_path: Path):
    big = form_source(wording={("guardian", "questionnaires"): "word " * 60_000}).encode()
    assert len(big) > 256 * 1024
    with pytest.raises(FormTooLarge) as caught:
        publish(db_session, dpo, big)
    assert caught.value.status_code == 413
    path = tmp_path / "big.md"
    path.write_bytes(big)
    with pytest.raises(FormTooLarge):
        service.load_form_file(db_session, dpo.actor, path)
    assert _count(db_session, ConsentForm) == 0


def test_a_form_in_english_is_allowed_in_every_country_and_crlf_files_hash_alike(db_session, dpo):
    unix = form_bytes("PL", "en")
    form = publish(db_session, dpo, unix).form
    again = publish(db_session, dpo, b"\xef\xbb\xbf" + unix.replace(b"\n", b"\r\n"))
    assert (again.form.id, again.created) == (form.id, False)


def test_a_form_may_end_the_validity_of_its_consents_on_a_later_day(db_session, dpo):
    source = form_source().replace("version: 1", "version: 1\nvalid_until: 2099-08-31")
    form = publish(db_session, dpo, source.encode()).form
    assert form.valid_until.isoformat() == "2099-08-31"
    assert publish(db_session, dpo, source.encode()).created is False
    with pytest.raises(FormVersionConflict):
        publish(db_session, dpo, source.replace("2099-08-31", "2099-09-30").encode())


def test_purposes_are_listed_in_display_order_with_the_special_category_flagged(db_session):
    purposes = service.list_purposes(db_session)
    assert [p.code for p in purposes] == list(ALL_PURPOSES)
    assert [p.code for p in purposes if p.special_category] == ["special_category"]
