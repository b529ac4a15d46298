"""Purposes and versioned consent forms: publish a form file once, read it forever.

The file format, the rendering and the hashes are described in ``consent.forms.rendering``.

Publishing rules:

* a version is immutable: publishing a file whose (country, language, version) exists already is
  idempotent when the file renders to the same texts with the same purposes, ``required`` flags
  and ``valid_until`` (the existing version is returned, nothing is written, so ``enclave demo``
  can run again); anything else is a 409 naming the existing version's hash;
* versions increase per country and language: a version at or below the highest one published is a
  409; gaps are allowed;
* ``valid_until``, when given, must be after the day of publication;
* two versions may not have the same texts (the form's hash is its identity): change the wording;
* the form's language must be one of the languages of the country's rule in force on the day of
  publication, or English (``en``, the project's common language, offered in every country);
* each publication writes one ``consent.form_published`` ledger entry in the same transaction, with
  codes, the version, hashes and the purposes' flags only (never the text).

``current_form`` answers with the highest version published at or before an instant; the version's
``valid_until`` concerns the consents given under it and does not retire the form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, Sha256Hex, register_action
from access.audit.service import Actor, record
from consent import service as rules
from consent.codes import LANGUAGE_CODES
from consent.exceptions import CountryRuleNotFound
from consent.forms import repository
from consent.forms.exceptions import FormNotFound, FormTooLarge, FormVersionConflict, InvalidForm
from consent.forms.models import Audience, ConsentForm, ConsentFormPurpose, ConsentFormText, Purpose
from consent.forms.rendering import MAX_FILE_BYTES, ParsedForm, parse_form
from infra.logging import get_logger

log = get_logger(__name__)

DEMO_FORMS_DIR = Path(__file__).resolve().parent.parent / "data" / "forms"
COMMON_LANGUAGE = "en"
"""Offered in every country besides the country rule's languages."""
MAX_SOURCE_NAME = 200


class FormPurposeFlag(Details):
    """A purpose of a published form and whether it is required."""

    purpose: Identifier
    required: bool


class FormPublishedDetails(Details):
    """Ledger details of a publication: codes, hashes and flags; the texts stay in the tables."""

    country: Identifier
    language: Identifier
    version: int
    form_sha256: Sha256Hex
    guardian_sha256: Sha256Hex
    child_sha256: Sha256Hex
    adult_sha256: Sha256Hex
    source_sha256: Sha256Hex
    valid_until: date | None = None
    purposes: tuple[FormPurposeFlag, ...]


FORM_PUBLISHED = register_action("consent.form_published", FormPublishedDetails)


@dataclass(frozen=True)
class Published:
    """The outcome of a publication: the version, and whether it was created now."""

    form: ConsentForm
    created: bool


def list_purposes(session: Session) -> Sequence[Purpose]:
    """Every purpose in display order."""
    return repository.purposes(session)


def get_form(session: Session, form_id: int) -> ConsentForm:
    """One published version; FormNotFound if there is none with this id."""
    form = repository.get(session, form_id)
    if form is None:
        raise FormNotFound(f"no consent form version {form_id}")
    return form


def form_by_sha256(session: Session, sha256: str) -> ConsentForm | None:
    """The version a form hash identifies (e.g. the one a decision records), or None."""
    return repository.by_sha256(session, sha256.strip().lower())


def text_for(form: ConsentForm, audience: Audience | str) -> ConsentFormText:
    """The form's text for an audience (every published form has all three)."""
    wanted = Audience(audience)
    for text in form.texts:
        if text.audience == wanted.value:
            return text
    raise FormNotFound(f"consent form version {form.id} has no {wanted.value} text")


def _language(language: str, location: str) -> str:
    code = language.strip().lower()
    if code not in LANGUAGE_CODES:
        raise InvalidForm(
            "language",
            f"{language!r} is not an ISO 639-1 language code",
            code="unknown_language",
            location=location,
        )
    return code


def list_forms(
    session: Session, *, country: str | None = None, language: str | None = None
) -> Sequence[ConsentForm]:
    """Every published version, optionally of one country and/or language."""
    code = rules.normalise_country(country, "query") if country is not None else None
    lang = _language(language, "query") if language is not None else None
    return repository.forms(session, code, lang)


def current_form(session: Session, country: str, language: str, on: datetime) -> ConsentForm | None:
    """The latest version of a country's form in a language published at or before ``on`` (naive: UTC)."""
    if on.tzinfo is None:
        on = on.replace(tzinfo=UTC)
    return repository.current(
        session, rules.normalise_country(country, "query"), _language(language, "query"), on
    )


def _check_language(session: Session, country: str, language: str, today: date) -> None:
    try:
        rule = rules.rule_for(session, country, today)
    except CountryRuleNotFound:
        raise InvalidForm(
            "country",
            f"{country} has no consent rule in force; load or create the country's rule first",
            code="no_country_rule",
            location="front_matter",
        ) from None
    allowed = ", ".join(dict.fromkeys([*rule.languages, COMMON_LANGUAGE]))
    if language not in rule.languages and language != COMMON_LANGUAGE:
        raise InvalidForm(
            "language",
            f"{language!r} is not a language of {country}'s rule; allowed: {allowed}",
            code="language_not_allowed",
            location="front_matter",
        )


def _same_content(form: ConsentForm, parsed: ParsedForm) -> bool:
    flags = {p.purpose: p.required for p in form.purposes}
    return (
        form.sha256 == parsed.sha256
        and flags == parsed.purposes
        and form.valid_until == parsed.front.valid_until
        and {p.purpose: p.section_sha256 for p in form.purposes} == parsed.section_sha256
    )


def _source_name(name: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in Path(name).name).strip()
    return (cleaned or "upload")[:MAX_SOURCE_NAME]


def publish_form(
    session: Session, actor: Actor, content: bytes, source_name: str, *, today: date | None = None
) -> Published:
    """Check, render and publish a form file (see the module docstring for the rules).

    Returns the existing version, unchanged, when the identical file was published before.
    Raises InvalidForm (422), FormTooLarge (413) or FormVersionConflict (409); nothing is written then.
    """
    known = {p.code: p.special_category for p in repository.purposes(session)}
    parsed = parse_form(content, known)
    front = parsed.front
    country = rules.normalise_country(front.country, "front_matter")
    language = _language(front.language, "front_matter")
    day = today or rules.utc_today()
    _check_language(session, country, language, day)
    label = f"{country}/{language} version {front.version}"

    existing = repository.by_version(session, country, language, front.version)
    if existing is not None:
        if _same_content(existing, parsed):
            return Published(existing, created=False)
        raise FormVersionConflict(
            f"{label} is already published with a different content (sha256 {existing.sha256}); "
            "published versions are immutable: publish the change as a new version",
            code="version_taken",
            existing_sha256=existing.sha256,
        )
    if front.valid_until is not None and front.valid_until <= day:
        raise InvalidForm(
            "valid_until",
            "must be after the day of publication: consents given under the version would be expired already",
            code="valid_until_past",
            location="front_matter",
        )
    latest = repository.latest_version(session, country, language)
    if latest is not None and latest > front.version:
        newest = repository.by_version(session, country, language, latest)
        raise FormVersionConflict(
            f"{country}/{language} is already at version {latest}; a new version must be above it",
            code="version_not_increasing",
            existing_sha256=newest.sha256 if newest is not None else None,
        )
    twin = repository.by_sha256(session, parsed.sha256)
    if twin is not None:
        raise FormVersionConflict(
            f"the same texts are already published as {twin.country_code}/{twin.language} version "
            f"{twin.version}; a new version must change the wording",
            code="same_text_published",
            existing_sha256=twin.sha256,
        )
    form = ConsentForm(
        country_code=country,
        language=language,
        version=front.version,
        sha256=parsed.sha256,
        valid_until=front.valid_until,
        published_at=datetime.now(UTC),
        published_by=actor.id,
        source_name=_source_name(source_name),
    )
    try:
        # A concurrent publication may have taken the version since the checks: 409, not 500.
        with session.begin_nested():
            session.add(form)
            session.flush()
            for text in parsed.texts.values():
                session.add(
                    ConsentFormText(
                        form_id=form.id,
                        audience=text.audience.value,
                        title=text.title,
                        markdown=text.markdown,
                        rendered_html=text.html,
                        sha256=text.sha256,
                    )
                )
            for code, required in parsed.purposes.items():
                session.add(
                    ConsentFormPurpose(
                        form_id=form.id,
                        purpose=code,
                        required=required,
                        section_sha256=parsed.section_sha256[code],
                    )
                )
            session.flush()
    except IntegrityError:
        raise FormVersionConflict(
            f"{label} was published by someone else meanwhile", code="version_taken"
        ) from None
    session.refresh(form)
    hashes = {t.audience: t.sha256 for t in parsed.texts.values()}
    record(
        session,
        actor,
        FORM_PUBLISHED,
        target_type="consent_form",
        target_id=str(form.id),
        details=FormPublishedDetails(
            country=country,
            language=language,
            version=front.version,
            form_sha256=parsed.sha256,
            guardian_sha256=hashes[Audience.guardian],
            child_sha256=hashes[Audience.child],
            adult_sha256=hashes[Audience.adult],
            source_sha256=parsed.source_sha256,
            valid_until=front.valid_until,
            purposes=tuple(FormPurposeFlag(purpose=c, required=r) for c, r in parsed.purposes.items()),
        ),
    )
    from consent.decisions.reconsent import record_form_change

    marked = record_form_change(session, form, actor)
    log.info(
        "consent.form_published",
        form_id=form.id,
        country=country,
        language=language,
        version=front.version,
        marked_for_reconsent=marked,
    )
    return Published(form, created=True)


def read_form_file(path: Path) -> bytes:
    """A form file's bytes, refusing a file too large before reading it whole."""
    with path.open("rb") as handle:
        content = handle.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise FormTooLarge(f"{path.name}: a form file may be at most {MAX_FILE_BYTES // 1024} KiB")
    return content


def load_form_file(session: Session, actor: Actor, path: Path) -> Published:
    """Publish one form file from disk (idempotent for a file published before)."""
    return publish_form(session, actor, read_form_file(path), path.name)


def form_files(directory: Path) -> list[Path]:
    """The ``*.md`` form files of a folder, by name."""
    return sorted(p for p in directory.glob("*.md") if p.is_file())


def load_demo_forms(session: Session, actor: Actor, *, directory: Path = DEMO_FORMS_DIR) -> list[Published]:
    """Publish the shipped demo forms (idempotent); the country rules must be loaded first."""
    return [load_form_file(session, actor, path) for path in form_files(directory)]
