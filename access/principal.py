"""Who is calling: the authenticated staff member a request acts for."""

from __future__ import annotations

from dataclasses import dataclass, field

from access.audit.actions import Role
from access.audit.service import Actor

STAFF_ROLES = frozenset({Role.admin, Role.dpo, Role.legal_reviewer, Role.data_steward, Role.researcher})
MFA_ROLES = frozenset({Role.admin, Role.dpo, Role.legal_reviewer, Role.data_steward})
"""Roles that may not act without a second factor."""


@dataclass(frozen=True)
class Principal:
    """An authenticated account with its roles and, for data stewards, its scope."""

    account_id: str
    roles: frozenset[Role]
    country: str | None = None
    schools: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None
    session_id: str | None = None
    """The sign-in (refresh-token family) the access token belongs to; sign-out ends it."""

    def has(self, *roles: Role) -> bool:
        """True when the account holds at least one of ``roles``."""
        return bool(self.roles.intersection(roles))

    @property
    def primary_role(self) -> Role:
        """The most privileged role, used to label ledger entries."""
        for role in (Role.admin, Role.dpo, Role.legal_reviewer, Role.data_steward, Role.researcher):
            if role in self.roles:
                return role
        return Role.anonymous

    @property
    def actor(self) -> Actor:
        """The ledger's view of this principal: an account id and a role, never a name."""
        return Actor(self.account_id, self.primary_role)
