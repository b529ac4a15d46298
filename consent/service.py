"""Country rules: versioned, immutable data saying who consents for a student of a given age.

Age semantics (completed years on the day consent is asked):

* below ``joint_consent_from_age`` (or below ``self_consent_age`` when there is no joint band) the
  guardian(s) consent; the child's assent is asked too from ``assent_from_age``;
* in the joint band ``[joint_consent_from_age, joint_consent_to_age)`` — from inclusive, to
  exclusive — guardian(s) and student must both consent;
* from ``self_consent_age`` the student consents alone.

Invariant checked on every version (API and shipped defaults alike)::

    0 ≤ assent_from_age ≤ joint_consent_from_age < joint_consent_to_age = self_consent_age ≤ 25
    age_of_digital_consent ≤ self_consent_age   (a project rule may be stricter than the law, never laxer)

where the joint band is both ages or neither, and without a band ``assent_from_age < self_consent_age``.

Versions: a version is in force from its ``effective_from`` until the next version's
``effective_from`` (exclusive), or open-ended. Versions are never updated; a change is a new
version, which may not start in the past (it would rewrite what was in force). A version that has not
yet taken effect (``effective_from`` after today, UTC) may be withdrawn by a DPO or admin; it is
deleted and the ledger keeps the record. Two versions of one country may not start the same day.

When a version is recorded, ``consent.decisions.reconsent.record_rule_impact`` lists the students
whose status changes on its first day (for the DPO: ``GET /api/consent/rule-impacts/{rule_id}``),
marks those who must decide again, and refreshes the country's status rows.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path

from babel import Locale
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, Sha256Hex, register_action
from access.audit.service import Actor, record
from access.principal import Principal
from consent import repository
from consent.codes import COUNTRY_CODES, LANGUAGE_CODES
from consent.exceptions import CountryRuleNotFound, InvalidCountryRule, RuleVersionConflict
from consent.models import CountryRule, GuardiansRequired, Verification
from consent.schemas import CountryRuleCreate
from infra.logging import get_logger

log = get_logger(__name__)

DEFAULT_RULES_CSV = Path(__file__).parent / "data" / "country_rules.csv"
DEFAULTS_EFFECTIVE_FROM = date(2018, 5, 25)
"""The shipped defaults are version 1, in force since the GDPR applies."""


class RuleSource(StrEnum):
    """Where a rule version came from."""

    api = "api"
    defaults = "defaults"


class CountryRuleDetails(Details):
    """Ledger details of a rule version: country, dates, ages and enums; legal text stays in the table."""

    country: Identifier
    effective_from: date
    source: RuleSource | None = None
    age_of_digital_consent: int | None = None
    self_consent_age: int | None = None
    joint_consent_from_age: int | None = None
    joint_consent_to_age: int | None = None
    assent_from_age: int | None = None
    guardians_required: GuardiansRequired | None = None
    verified: Verification | None = None
    letscare_country: bool | None = None


class RulesLoadedDetails(Details):
    """Ledger details of a load of the shipped defaults."""

    loaded: int
    skipped: int
    csv_sha256: Sha256Hex


RULE_CREATED = register_action("consent.rule_created", CountryRuleDetails)
RULE_WITHDRAWN = register_action("consent.rule_withdrawn", CountryRuleDetails)
RULES_LOADED = register_action("consent.rules_loaded", RulesLoadedDetails)


@dataclass(frozen=True)
class RuleVersion:
    """A version with the day its successor takes over (exclusive), or None when open-ended."""

    rule: CountryRule
    effective_to: date | None


def utc_today() -> date:
    """Today in UTC: rules change at midnight UTC."""
    return datetime.now(UTC).date()


def normalise_country(country: str, location: str = "path") -> str:
    """The upper-case ISO 3166-1 alpha-2 code; InvalidCountryRule for anything else."""
    code = country.strip().upper()
    if code not in COUNTRY_CODES:
        raise InvalidCountryRule(
            "country",
            f"{country!r} is not an ISO 3166-1 alpha-2 country code",
            code="unknown_country",
            location=location,
        )
    return code


def _check_languages(languages: list[str]) -> None:
    for language in languages:
        if language not in LANGUAGE_CODES:
            raise InvalidCountryRule(
                "languages", f"{language!r} is not a lower-case ISO 639-1 code", code="unknown_language"
            )
    if len(set(languages)) != len(languages):
        raise InvalidCountryRule("languages", "a language is listed twice", code="duplicate_language")


def check_rule(data: CountryRuleCreate) -> None:
    """Check languages and the age invariant (ages 0-25 are checked by the schema); names the field."""
    _check_languages(data.languages)
    if data.self_consent_age < data.age_of_digital_consent:
        raise InvalidCountryRule(
            "self_consent_age",
            "may not be below age_of_digital_consent (a project rule may be stricter than the law, "
            "not laxer)",
            code="laxer_than_law",
        )
    start, end = data.joint_consent_from_age, data.joint_consent_to_age
    if (start is None) != (end is None):
        field = "joint_consent_to_age" if end is None else "joint_consent_from_age"
        raise InvalidCountryRule(
            field, "the joint band needs both of its ages, or neither", code="joint_band_half"
        )
    if start is not None and end is not None:
        if start >= end:
            raise InvalidCountryRule(
                "joint_consent_from_age", "must be below joint_consent_to_age", code="joint_band_empty"
            )
        if end != data.self_consent_age:
            raise InvalidCountryRule(
                "joint_consent_to_age",
                "must equal self_consent_age (the band ends when the student consents alone)",
                code="joint_band_gap",
            )
    if data.assent_from_age is not None:
        if start is not None and data.assent_from_age > start:
            raise InvalidCountryRule(
                "assent_from_age", "may not be above joint_consent_from_age", code="assent_after_joint"
            )
        if data.assent_from_age >= data.self_consent_age:
            raise InvalidCountryRule(
                "assent_from_age", "must be below self_consent_age", code="assent_after_self_consent"
            )


def _details(rule: CountryRule, source: RuleSource | None = None) -> CountryRuleDetails:
    return CountryRuleDetails(
        country=rule.country_code,
        effective_from=rule.effective_from,
        source=source,
        age_of_digital_consent=rule.age_of_digital_consent,
        self_consent_age=rule.self_consent_age,
        joint_consent_from_age=rule.joint_consent_from_age,
        joint_consent_to_age=rule.joint_consent_to_age,
        assent_from_age=rule.assent_from_age,
        guardians_required=GuardiansRequired(rule.guardians_required),
        verified=Verification(rule.verified),
        letscare_country=rule.letscare_country,
    )


def _insert(
    session: Session, actor: Actor, country: str, data: CountryRuleCreate, source: RuleSource
) -> CountryRule:
    taken = RuleVersionConflict(
        f"{country} already has a rule version starting {data.effective_from.isoformat()}; "
        "versions are immutable: choose another effective_from",
        code="effective_from_taken",
    )
    if repository.exists_on(session, country, data.effective_from):
        raise taken
    rule = CountryRule(
        country_code=country,
        country_name=data.country_name or Locale("en").territories.get(country, country),
        effective_from=data.effective_from,
        age_of_digital_consent=data.age_of_digital_consent,
        self_consent_age=data.self_consent_age,
        joint_consent_from_age=data.joint_consent_from_age,
        joint_consent_to_age=data.joint_consent_to_age,
        assent_from_age=data.assent_from_age,
        guardians_required=data.guardians_required.value,
        languages=list(data.languages),
        letscare_country=data.letscare_country,
        legal_source=data.legal_source,
        verified=data.verified.value,
        notes=data.notes,
        created_by=actor.id,
        created_at=datetime.now(UTC),
    )
    try:
        # A concurrent request may have taken the day since the check: answer 409, not 500.
        with session.begin_nested():
            session.add(rule)
            session.flush()
    except IntegrityError:
        raise taken from None
    record(
        session,
        actor,
        RULE_CREATED,
        target_type="country_rule",
        target_id=str(rule.id),
        details=_details(rule, source),
    )
    return rule


def create_rule(
    session: Session,
    principal: Principal,
    country: str,
    data: CountryRuleCreate,
    *,
    today: date | None = None,
) -> CountryRule:
    """Record a new version of a country's rule, starting today or later; returns it (hook point)."""
    code = normalise_country(country)
    check_rule(data)
    if data.effective_from < (today or utc_today()):
        raise InvalidCountryRule(
            "effective_from",
            "may not be in the past (a new version cannot rewrite history)",
            code="in_the_past",
        )
    if data.country_name is None:
        existing = repository.versions(session, [code])
        if existing:
            data = data.model_copy(update={"country_name": existing[-1].country_name})
    rule = _insert(session, principal.actor, code, data, RuleSource.api)
    from consent.decisions.reconsent import record_rule_impact

    affected = record_rule_impact(session, rule, principal.actor)
    log.info("consent.rule_created", country=code, rule_id=rule.id, affected=affected)
    return rule


def withdraw_rule(
    session: Session, principal: Principal, country: str, rule_id: int, *, today: date | None = None
) -> CountryRule:
    """Delete a version that has not taken effect yet; versions in force or past stay forever."""
    code = normalise_country(country)
    rule = repository.get(session, code, rule_id)
    if rule is None:
        raise CountryRuleNotFound(f"{code} has no rule version {rule_id}")
    if rule.effective_from <= (today or utc_today()):
        raise RuleVersionConflict(
            f"version {rule_id} took effect on {rule.effective_from.isoformat()}; only future versions "
            "may be withdrawn: record a new version instead",
            code="version_already_effective",
        )
    details = _details(rule)
    session.delete(rule)
    session.flush()
    record(
        session,
        principal.actor,
        RULE_WITHDRAWN,
        target_type="country_rule",
        target_id=str(rule_id),
        details=details,
    )
    from consent.decisions import status_cache

    status_cache.refresh(session, country=code)
    log.info("consent.rule_withdrawn", country=code, rule_id=rule_id)
    return rule


def _with_effective_to(session: Session, rules: Sequence[CountryRule]) -> list[RuleVersion]:
    """Pair each version with its successor's start, in one query over the countries involved."""
    starts: dict[str, list[date]] = defaultdict(list)
    for version in repository.versions(session, {r.country_code for r in rules}):
        starts[version.country_code].append(version.effective_from)
    result = []
    for rule in rules:
        later = [d for d in starts[rule.country_code] if d > rule.effective_from]
        result.append(RuleVersion(rule=rule, effective_to=min(later) if later else None))
    return result


def list_versions(
    session: Session, *, country: str | None = None, on_date: date | None = None
) -> list[RuleVersion]:
    """All versions (of one country), or with ``on_date`` only those in force that day."""
    code = normalise_country(country, "query") if country is not None else None
    if on_date is not None:
        rules = repository.in_force(session, on_date, code)
    else:
        rules = repository.versions(session, [code] if code else None)
    return _with_effective_to(session, rules)


def rule_for(session: Session, country: str, on_date: date) -> CountryRule:
    """The version of a country's rule in force on a date; CountryRuleNotFound if none was yet."""
    code = normalise_country(country)
    found = repository.in_force(session, on_date, code)
    if not found:
        raise CountryRuleNotFound(f"no rule for {code} was in force on {on_date.isoformat()}")
    return found[0]


def rule_version_for(session: Session, country: str, on_date: date) -> RuleVersion:
    """``rule_for`` with the day the version ends."""
    return _with_effective_to(session, [rule_for(session, country, on_date)])[0]


def rules_in_force(session: Session, on_date: date) -> dict[str, CountryRule]:
    """The version in force on a date for every country that has one, by country code."""
    return {rule.country_code: rule for rule in repository.in_force(session, on_date)}


def _default_rows(path: Path) -> Iterable[tuple[str, CountryRuleCreate]]:
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):

            def age(name: str, row: dict[str, str] = row) -> int | None:
                return int(row[name]) if row[name].strip() else None

            data = CountryRuleCreate(
                effective_from=DEFAULTS_EFFECTIVE_FROM,
                age_of_digital_consent=int(row["age_of_digital_consent"]),
                self_consent_age=int(row["self_consent_age"]),
                joint_consent_from_age=age("joint_consent_from_age"),
                joint_consent_to_age=age("joint_consent_to_age"),
                assent_from_age=age("assent_from_age"),
                guardians_required=GuardiansRequired(row["guardians_required"]),
                languages=row["languages"].split(),
                letscare_country=row["letscare_country"] == "yes",
                legal_source=row["legal_source"],
                verified=Verification(row["verified"]),
                notes=row["notes"],
                country_name=row["country"],
            )
            yield normalise_country(row["country_code"], "csv"), data


def default_countries(path: Path = DEFAULT_RULES_CSV) -> set[str]:
    """The countries the shipped defaults cover."""
    return {code for code, _ in _default_rows(path)}


def load_default_rules(
    session: Session, actor: Actor, *, path: Path = DEFAULT_RULES_CSV
) -> list[CountryRule]:
    """Insert the shipped rules as version 1 (from 2018-05-25) for every country without a rule.

    Idempotent: a country with any version is left alone, so a DPO's versions are never touched.
    Called by ``enclave db upgrade`` and ``enclave demo`` after migrating, and by the DPO's API.
    """
    rows = list(_default_rows(path))
    for _, data in rows:
        check_rule(data)
    present = repository.countries_with_rules(session)
    created = [
        _insert(session, actor, code, data, RuleSource.defaults) for code, data in rows if code not in present
    ]
    record(
        session,
        actor,
        RULES_LOADED,
        target_type="country_rule",
        details=RulesLoadedDetails(
            loaded=len(created),
            skipped=len(rows) - len(created),
            csv_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        ),
    )
    log.info("consent.rules_loaded", loaded=len(created), skipped=len(rows) - len(created))
    return created
