"""Who may call: typed FastAPI dependencies, one per capability.

Every endpoint depends on exactly one of the ``*Dep`` aliases below (or is listed as public), so the
route × role test can read each endpoint's rule from the app itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from access.accounts.signin import AuthEnvironment, authenticate
from access.accounts.tokens import TokenService
from access.audit.actions import Role
from access.principal import Principal
from infra.errors import Forbidden, Unauthorized
from infra.web.deps import SessionDep

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/auth/token",
    auto_error=False,
    description=(
        "Sign in with your email address and password. Staff whose roles need a second factor "
        "put the authenticator code in the client_secret field of this dialog."
    ),
)
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


def auth_environment(request: Request) -> AuthEnvironment:
    """The process's keys, settings and token service (the token service is built once per app)."""
    state = request.app.state
    environment: AuthEnvironment | None = getattr(state, "auth_environment", None)
    if environment is None:
        keys = state.components.keys
        environment = AuthEnvironment(keys, state.settings, TokenService.from_settings(keys, state.settings))
        state.auth_environment = environment
    return environment


AuthEnvironmentDep = Annotated[AuthEnvironment, Depends(auth_environment)]


def _authenticated(
    session: SessionDep, environment: AuthEnvironmentDep, token: BearerToken, *, allow_enrolment: bool
) -> Principal:
    if not token:
        raise Unauthorized("sign in first: send a valid bearer access token")
    return authenticate(session, environment, token, allow_enrolment=allow_enrolment)


def get_principal(session: SessionDep, environment: AuthEnvironmentDep, token: BearerToken) -> Principal:
    """The authenticated caller (bearer access token); 401 when there is none or it is invalid."""
    return _authenticated(session, environment, token, allow_enrolment=False)


def get_enrolling_principal(
    session: SessionDep, environment: AuthEnvironmentDep, token: BearerToken
) -> Principal:
    """Like ``get_principal`` but also admits the restricted token that only allows enrolling MFA."""
    return _authenticated(session, environment, token, allow_enrolment=True)


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits callers holding one of ``roles`` and refuses the rest with 403."""

    def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.has(*roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(r.value for r in roles))}")
        return principal

    dependency.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
    return dependency


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
EnrollingPrincipal = Annotated[Principal, Depends(get_enrolling_principal)]
AdminDep = Annotated[Principal, Depends(require_roles(Role.admin))]
DpoDep = Annotated[Principal, Depends(require_roles(Role.dpo))]
DpoOrAdminDep = Annotated[Principal, Depends(require_roles(Role.dpo, Role.admin))]
ReviewerDep = Annotated[Principal, Depends(require_roles(Role.dpo, Role.legal_reviewer))]
StewardDep = Annotated[Principal, Depends(require_roles(Role.data_steward))]
ResearcherDep = Annotated[Principal, Depends(require_roles(Role.researcher))]
StewardOrDpoDep = Annotated[Principal, Depends(require_roles(Role.data_steward, Role.dpo))]
"""Personal-data work on rosters, decisions and requests: stewards within their scope, the DPO everywhere."""
