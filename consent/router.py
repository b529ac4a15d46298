"""HTTP endpoints of country rules under /api/consent/rules."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from access.dependencies import CurrentPrincipal, DpoOrAdminDep
from consent import service
from consent.schemas import CountryRuleCreate, CountryRuleRead, DefaultsLoaded
from consent.service import RuleVersion
from infra.web.deps import SessionDep

router = APIRouter(prefix="/api/consent/rules", tags=["consent"])

Country = Annotated[
    str, Path(description="ISO 3166-1 alpha-2 country code (e.g. BG).", pattern=r"^[A-Za-z]{2}$")
]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only a DPO or an admin may change rules."},
    404: {"description": "No such rule version, or no rule in force on that date."},
    409: {"description": "The versions already recorded for the country do not allow this."},
    422: {"description": "The input is invalid; the answer names the field and the rule."},
}


def _read(version: RuleVersion) -> CountryRuleRead:
    rule = version.rule
    return CountryRuleRead.model_validate(
        {
            **{name: getattr(rule, name) for name in CountryRuleRead.model_fields if name != "effective_to"},
            "effective_to": version.effective_to,
        }
    )


@router.get("", response_model=list[CountryRuleRead], responses=PROBLEMS)
def list_rules(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    on: Annotated[date | None, Query(description="Only the versions in force on this day.")] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", description="One country.")] = None,
) -> list[CountryRuleRead]:
    """Rule versions by country and start date; with ``on``, those in force that day."""
    return [_read(v) for v in service.list_versions(session, country=country, on_date=on)]


@router.post("/defaults", response_model=DefaultsLoaded, responses=PROBLEMS)
def load_defaults(principal: DpoOrAdminDep, session: SessionDep) -> DefaultsLoaded:
    """Load the shipped rules (version 1 from 2018-05-25) for every country that has no rule yet."""
    created = {rule.country_code for rule in service.load_default_rules(session, principal.actor)}
    return DefaultsLoaded(loaded=sorted(created), skipped=sorted(service.default_countries() - created))


@router.get("/{country}", response_model=list[CountryRuleRead], responses=PROBLEMS)
def country_versions(
    country: Country, principal: CurrentPrincipal, session: SessionDep
) -> list[CountryRuleRead]:
    """Every version of one country's rule, oldest first."""
    return [_read(v) for v in service.list_versions(session, country=country)]


@router.get("/{country}/in-force", response_model=CountryRuleRead, responses=PROBLEMS)
def in_force(
    country: Country,
    principal: CurrentPrincipal,
    session: SessionDep,
    on: Annotated[date | None, Query(description="The day (default: today, UTC).")] = None,
) -> CountryRuleRead:
    """The version of one country's rule in force on a day."""
    return _read(service.rule_version_for(session, country, on or service.utc_today()))


@router.post(
    "/{country}", response_model=CountryRuleRead, status_code=status.HTTP_201_CREATED, responses=PROBLEMS
)
def create_rule(
    country: Country, body: CountryRuleCreate, principal: DpoOrAdminDep, session: SessionDep
) -> CountryRuleRead:
    """Record a new, immutable version starting today or later (a change is always a new version)."""
    rule = service.create_rule(session, principal, country, body)
    return _read(service.list_versions(session, country=rule.country_code, on_date=rule.effective_from)[0])


@router.delete("/{country}/versions/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=PROBLEMS)
def withdraw_rule(
    country: Country,
    rule_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    principal: DpoOrAdminDep,
    session: SessionDep,
) -> None:
    """Withdraw a version that has not taken effect yet; versions in force or past cannot be."""
    service.withdraw_rule(session, principal, country, rule_id)
