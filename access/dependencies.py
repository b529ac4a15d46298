"""Who may call: typed FastAPI dependencies, one per capability.

Every endpoint depends on exactly one of the ``*Dep`` aliases below (or is listed as public), so the
route × role test can read each endpoint's rule from the app itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from access.audit.actions import Role
from access.principal import Principal
from infra.errors import Forbidden, Unauthorized


def get_principal(request: Request) -> Principal:
    """The authenticated caller (bearer access token); 401 when there is none or it is invalid."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthorized("sign in first: send a valid bearer access token")
    assert isinstance(principal, Principal)
    return principal


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits callers holding one of ``roles`` and refuses the rest with 403."""

    def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.has(*roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(r.value for r in roles))}")
        return principal

    dependency.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
    return dependency


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(require_roles(Role.admin))]
DpoDep = Annotated[Principal, Depends(require_roles(Role.dpo))]
DpoOrAdminDep = Annotated[Principal, Depends(require_roles(Role.dpo, Role.admin))]
ReviewerDep = Annotated[Principal, Depends(require_roles(Role.dpo, Role.legal_reviewer))]
StewardDep = Annotated[Principal, Depends(require_roles(Role.data_steward))]
ResearcherDep = Annotated[Principal, Depends(require_roles(Role.researcher))]
