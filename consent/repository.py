"""Queries on country rules. Rules are not personal data: every staff member may read them all."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.models import CountryRule


def versions(session: Session, countries: Iterable[str] | None = None) -> Sequence[CountryRule]:
    """Every version (of the given countries), by country then effective date."""
    query = select(CountryRule).order_by(CountryRule.country_code, CountryRule.effective_from)
    if countries is not None:
        query = query.where(CountryRule.country_code.in_(list(countries)))
    return session.scalars(query).all()


def get(session: Session, country: str, rule_id: int) -> CountryRule | None:
    """One version of one country."""
    return session.scalars(
        select(CountryRule).where(CountryRule.id == rule_id, CountryRule.country_code == country)
    ).first()


def exists_on(session: Session, country: str, effective_from: date) -> bool:
    """Whether the country already has a version starting that day."""
    found = session.scalar(
        select(CountryRule.id).where(
            CountryRule.country_code == country, CountryRule.effective_from == effective_from
        )
    )
    return found is not None


def countries_with_rules(session: Session) -> set[str]:
    """Countries that have at least one version."""
    return set(session.scalars(select(CountryRule.country_code).distinct()).all())


def in_force(session: Session, on_date: date, country: str | None = None) -> Sequence[CountryRule]:
    """The version in force on a date for each country (or the one country) that has one."""
    latest = select(
        CountryRule.country_code.label("country_code"),
        func.max(CountryRule.effective_from).label("effective_from"),
    ).where(CountryRule.effective_from <= on_date)
    if country is not None:
        latest = latest.where(CountryRule.country_code == country)
    sub = latest.group_by(CountryRule.country_code).subquery()
    query = (
        select(CountryRule)
        .join(
            sub,
            (CountryRule.country_code == sub.c.country_code)
            & (CountryRule.effective_from == sub.c.effective_from),
        )
        .order_by(CountryRule.country_code)
    )
    return session.scalars(query).all()
