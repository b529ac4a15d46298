"""What part of the rosters a staff member may see: every repository query narrows through here.

The DPO sees every country. A data steward sees their country only, and within it only their schools
when their account lists any (a school coordinator); a steward with a country and no schools is that
country's coordinator. A steward without a country sees nothing.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, true
from sqlalchemy.orm import InstrumentedAttribute

from access.audit.actions import Role
from access.principal import Principal
from infra.errors import Forbidden


def sees_everything(principal: Principal) -> bool:
    """The DPO's view: no country or school narrowing."""
    return principal.has(Role.dpo)


def in_scope(principal: Principal, country: str, school: str | None = None) -> bool:
    """Whether a record of this country (and school, when it has one) is visible to the principal."""
    if sees_everything(principal):
        return True
    if not principal.has(Role.data_steward) or principal.country is None:
        return False
    if country != principal.country:
        return False
    return not principal.schools or school is None or school in principal.schools


def require_scope(principal: Principal, country: str, school: str | None = None) -> None:
    """Forbidden, naming the scope, when the principal may not act on this country or school."""
    if in_scope(principal, country, school):
        return
    where = f"{country}/{school}" if school else country
    mine = principal.country or "no country"
    if principal.schools:
        mine += " (schools " + ", ".join(sorted(principal.schools)) + ")"
    raise Forbidden(f"{where} is outside your scope: {mine}", extra={"reason": "outside_scope"})


def scope_filter(
    principal: Principal,
    country_column: InstrumentedAttribute[str],
    school_column: InstrumentedAttribute[str] | None = None,
) -> ColumnElement[bool]:
    """A WHERE clause limiting rows of a table with these columns to the principal's scope."""
    if sees_everything(principal):
        return true()
    if not principal.has(Role.data_steward) or principal.country is None:
        return false()
    clause: ColumnElement[bool] = country_column == principal.country
    if principal.schools and school_column is not None:
        clause = clause & school_column.in_(sorted(principal.schools))
    return clause
