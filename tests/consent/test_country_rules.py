"""Country rules: shipped defaults, versions in force around their dates, the age invariant, the ledger."""

from __future__ import annotations

import csv
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.audit.service import Actor
from consent import service
from consent.codes import EU_EEA
from consent.exceptions import CountryRuleNotFound, InvalidCountryRule, RuleVersionConflict
from consent.models import CountryRule
from consent.schemas import CountryRuleCreate
from tests.support.projects import make_principal

TODAY = date(2026, 11, 23)
FREE_TEXT = ("legal_source", "notes", "country_name")


def rule_data(**overrides):
    values = {
        "effective_from": TODAY + timedelta(days=30),
        "age_of_digital_consent": 14,
        "self_consent_age": 16,
        "languages": ["bg"],
        "legal_source": "Personal Data Protection Act art. 25c (amended)",
        "verified": "partly",
        "notes": "raised after the legal partner's review",
    }
    values.update(overrides)
    return CountryRuleCreate.model_validate(values)


@pytest.fixture
def dpo(db_session):
    return make_principal(db_session, Role.dpo)


def _ledger(session, action):
    session.commit()
    return list(
        session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq))
    )


def test_defaults_load_every_eu_eea_state_with_sources_kept(db_session):
    created = service.load_default_rules(db_session, Actor.system())
    assert {r.country_code for r in created} == EU_EEA
    shipped = {
        row["country_code"]: row for row in csv.DictReader(service.DEFAULT_RULES_CSV.open(encoding="utf-8"))
    }
    for rule in created:
        row = shipped[rule.country_code]
        assert rule.effective_from == date(2018, 5, 25)
        assert rule.legal_source == row["legal_source"]
        assert rule.verified == row["verified"]
        assert rule.notes == row["notes"]
        assert rule.country_name == row["country"]
        assert rule.created_by == "system"
    by_country = {r.country_code: r for r in created}
    bulgaria = by_country["BG"]
    assert (bulgaria.joint_consent_from_age, bulgaria.joint_consent_to_age, bulgaria.self_consent_age) == (
        14,
        18,
        18,
    )
    assert bulgaria.age_of_digital_consent == 14
    assert bulgaria.assent_from_age == 7
    assert "co-consent" in bulgaria.notes
    assert by_country["BE"].languages == ["nl", "fr", "de"]
    assert by_country["ES"].self_consent_age == 14
    assert by_country["ES"].assent_from_age == 7
    assert by_country["DE"].assent_from_age is None
    assert all(r.letscare_country == (r.country_code in {"BE", "BG", "ES", "PL"}) for r in created)


def test_loading_defaults_again_changes_nothing_and_keeps_a_dpo_version(db_session, dpo):
    service.load_default_rules(db_session, Actor.system())
    newer = service.create_rule(db_session, dpo, "BG", rule_data(), today=TODAY)
    assert service.load_default_rules(db_session, Actor.system()) == []
    assert len(db_session.scalars(select(CountryRule)).all()) == 31
    assert db_session.get(CountryRule, newer.id) is not None
    loads = _ledger(db_session, service.RULES_LOADED)
    assert [(e.details["loaded"], e.details["skipped"]) for e in loads] == [(30, 0), (0, 30)]


def test_rule_for_picks_the_version_in_force_around_its_effective_date(db_session, dpo):
    service.load_default_rules(db_session, Actor.system())
    start = TODAY + timedelta(days=30)
    newer = service.create_rule(db_session, dpo, "bg", rule_data(effective_from=start), today=TODAY)
    assert service.rule_for(db_session, "BG", start - timedelta(days=1)).effective_from == date(2018, 5, 25)
    assert service.rule_for(db_session, "BG", start).id == newer.id
    assert service.rule_for(db_session, "BG", start + timedelta(days=1)).id == newer.id
    old = service.rule_version_for(db_session, "BG", TODAY)
    assert old.effective_to == start
    assert service.rule_version_for(db_session, "BG", start).effective_to is None
    in_force = service.rules_in_force(db_session, start)
    assert len(in_force) == 30
    assert in_force["BG"].id == newer.id
    with pytest.raises(CountryRuleNotFound):
        service.rule_for(db_session, "BG", date(2018, 5, 24))


def test_two_versions_starting_the_same_day_are_refused(db_session, dpo):
    service.create_rule(db_session, dpo, "BG", rule_data(), today=TODAY)
    with pytest.raises(RuleVersionConflict) as caught:
        service.create_rule(db_session, dpo, "BG", rule_data(self_consent_age=18), today=TODAY)
    assert caught.value.status_code == 409


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"joint_consent_from_age": 14}, "joint_consent_to_age"),
        ({"joint_consent_from_age": 16, "joint_consent_to_age": 16}, "joint_consent_from_age"),
        ({"joint_consent_from_age": 14, "joint_consent_to_age": 15}, "joint_consent_to_age"),
        (
            {"joint_consent_from_age": 14, "joint_consent_to_age": 16, "assent_from_age": 15},
            "assent_from_age",
        ),
        ({"assent_from_age": 16}, "assent_from_age"),
        ({"self_consent_age": 13}, "self_consent_age"),
        ({"languages": ["xx"]}, "languages"),
        ({"languages": ["bg", "bg"]}, "languages"),
        ({"effective_from": TODAY - timedelta(days=1)}, "effective_from"),
    ],
)
def test_inconsistent_versions_are_refused_naming_the_field(db_session, dpo, overrides, field):
    with pytest.raises(InvalidCountryRule) as caught:
        service.create_rule(db_session, dpo, "BG", rule_data(**overrides), today=TODAY)
    assert caught.value.field == field
    assert caught.value.status_code == 422


def test_unknown_country_is_refused(db_session, dpo):
    with pytest.raises(InvalidCountryRule) as caught:
        service.create_rule(db_session, dpo, "XX", rule_data(), today=TODAY)
    assert caught.value.code == "unknown_country"


def test_only_versions_not_yet_in_force_can_be_withdrawn(db_session, dpo):
    service.load_default_rules(db_session, Actor.system())
    future = service.create_rule(db_session, dpo, "BG", rule_data(), today=TODAY)
    past = service.rule_for(db_session, "BG", TODAY)
    with pytest.raises(RuleVersionConflict):
        service.withdraw_rule(db_session, dpo, "BG", past.id, today=TODAY)
    with pytest.raises(RuleVersionConflict):
        service.withdraw_rule(db_session, dpo, "BG", future.id, today=future.effective_from)
    with pytest.raises(CountryRuleNotFound):
        service.withdraw_rule(db_session, dpo, "ES", future.id, today=TODAY)
    future_id = future.id
    service.withdraw_rule(db_session, dpo, "BG", future_id, today=TODAY)
    assert db_session.get(CountryRule, future_id) is None
    assert service.rule_for(db_session, "BG", TODAY + timedelta(days=365)).id == past.id


def test_every_write_leaves_a_ledger_entry_without_free_text(db_session, dpo):
    service.load_default_rules(db_session, Actor.system())
    rule = service.create_rule(db_session, dpo, "BG", rule_data(), today=TODAY)
    rule_id, free_text = rule.id, [getattr(rule, name) for name in FREE_TEXT]
    service.withdraw_rule(db_session, dpo, "BG", rule_id, today=TODAY)
    created = _ledger(db_session, service.RULE_CREATED)
    assert len(created) == 31
    mine = [e for e in created if e.target_id == str(rule_id)]
    assert len(mine) == 1
    assert mine[0].actor_id == dpo.account_id
    assert mine[0].details["source"] == "api"
    assert mine[0].details["self_consent_age"] == 16
    assert mine[0].target_type == "country_rule"
    withdrawn = _ledger(db_session, service.RULE_WITHDRAWN)
    assert [(e.target_id, e.actor_id) for e in withdrawn] == [(str(rule_id), dpo.account_id)]
    assert len(_ledger(db_session, service.RULES_LOADED)) == 1
    shipped = {r.legal_source for r in db_session.scalars(select(CountryRule))} | {
        r.notes for r in db_session.scalars(select(CountryRule))
    }
    for entry in [*created, *withdrawn]:
        values = [str(v) for v in entry.details.values()]
        assert not any(text and text in values for text in [*free_text, *shipped])
        assert all(" " not in v for v in values)


def test_a_new_country_is_named_in_english_unless_a_name_is_given(db_session, dpo):
    rule = service.create_rule(
        db_session, dpo, "ch", rule_data(languages=["de", "fr", "it", "rm"]), today=TODAY
    )
    assert (rule.country_code, rule.country_name) == ("CH", "Switzerland")


def test_a_version_racing_for_the_same_day_is_a_conflict_not_a_crash(db_session, dpo, monkeypatch):
    service.create_rule(db_session, dpo, "BG", rule_data(), today=TODAY)
    monkeypatch.setattr(service.repository, "exists_on", lambda *_: False)
    with pytest.raises(RuleVersionConflict):
        service.create_rule(db_session, dpo, "BG", rule_data(), today=TODAY)
    assert len(service.list_versions(db_session, country="BG")) == 1
