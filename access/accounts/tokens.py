"""Access tokens: short-lived ES256 JWTs signed by the key backend and verified with python-jose.

The signing key is the ECDSA P-256 key ``access-token`` of the key backend (a key file, or a
Vault/OpenBao transit key whose private half never leaves the server). Every token names its key
version in the ``kid`` header; rotating the key makes new tokens use the new version while tokens
of older versions keep verifying until that version is retired. Verification accepts exactly one
algorithm, ES256, and requires every registered claim, so ``alg: none``, HMAC tokens made with the
public key as secret, foreign issuers or audiences and expired tokens are all refused.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError

from access.accounts.exceptions import InvalidToken
from access.audit.actions import Role
from infra.keys import KeyBackend, KeyManagementError
from infra.settings import Settings

SIGNING_KEY = "access-token"
ALGORITHM = "ES256"
ENROLMENT_SCOPE = "mfa_enrolment"
"""Scope of the restricted token given to staff whose roles need MFA before they enrolled it."""
_LEEWAY_SECONDS = 5
_KEY_CACHE_SECONDS = 60.0
_KEY_REFRESH_MIN_SECONDS = 2.0
_REQUIRED = ("iss", "aud", "exp", "iat", "nbf", "jti", "sub", "sid")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token."""

    subject: str
    token_id: str
    session_id: str
    roles: frozenset[Role]
    country: str | None
    schools: frozenset[str]
    scope: str | None
    expires_at: int

    @property
    def restricted(self) -> bool:
        """True for a token that only allows enrolling a second factor."""
        return self.scope == ENROLMENT_SCOPE


@dataclass(frozen=True)
class IssuedToken:
    """A signed access token and when it expires (seconds since the epoch)."""

    token: str
    token_id: str
    expires_at: int
    expires_in: int


@dataclass
class TokenService:
    """Issues and verifies access tokens for one process; caches the published public keys briefly."""

    keys: KeyBackend
    issuer: str
    audience: str
    ttl_seconds: int
    _public: dict[str, str] = field(default_factory=dict)
    _loaded_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, keys: KeyBackend, settings: Settings) -> TokenService:
        """Build from the token settings."""
        return cls(
            keys=keys,
            issuer=settings.token_issuer or settings.public_url,
            audience=settings.token_audience,
            ttl_seconds=settings.access_token_ttl_seconds,
        )

    def issue(
        self,
        *,
        subject: str,
        session_id: str,
        roles: list[Role],
        country: str | None = None,
        schools: list[str] | None = None,
        scope: str | None = None,
        now: int | None = None,
    ) -> IssuedToken:
        """Sign an access token for ``subject`` with the newest version of the signing key."""
        issued = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
            "sid": session_id,
            "roles": sorted(role.value for role in roles),
        }
        if country is not None:
            claims["country"] = country
        if schools:
            claims["schools"] = sorted(schools)
        if scope is not None:
            claims["scope"] = scope
        return IssuedToken(self.sign_claims(claims), claims["jti"], claims["exp"], claims["exp"] - issued)

    def sign_claims(self, claims: dict[str, Any]) -> str:
        """A compact JWS of ``claims`` signed by the key backend (ES256, ``kid`` in the header)."""
        kid = self.keys.jws_key_id(SIGNING_KEY)
        if self._public and kid not in self._public:
            self.forget_keys()  # the key was rotated since the public keys were cached
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": kid}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":"), sort_keys=True).encode())
            for part in (header, claims)
        )
        signature = self.keys.sign_jws(SIGNING_KEY, kid, signing_input.encode())
        return f"{signing_input}.{_b64url(signature)}"

    def _public_key(self, kid: str) -> str | None:
        with self._lock:
            age = time.monotonic() - self._loaded_at
            # A kid we have not seen may be a rotation made by another process: reload, but not
            # more often than every few seconds, so garbage kids cannot hammer the key backend.
            if age > _KEY_CACHE_SECONDS or (kid not in self._public and age > _KEY_REFRESH_MIN_SECONDS):
                self._public = self.keys.jws_public_keys(SIGNING_KEY)
                self._loaded_at = time.monotonic()
            return self._public.get(kid)

    def forget_keys(self) -> None:
        """Drop the cached public keys (after a rotation or retirement in this process)."""
        with self._lock:
            self._public = {}
            self._loaded_at = 0.0

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid access token; InvalidToken for anything else."""
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError:
            raise InvalidToken("the access token is malformed") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("the access token is not signed with the expected algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("the access token names no signing key")
        try:
            public_key = self._public_key(kid)
        except KeyManagementError:
            public_key = None
        if public_key is None:
            raise InvalidToken("the access token was signed by an unknown or retired key")
        try:
            claims = jwt.decode(
                token,
                public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={**{f"require_{name}": True for name in _REQUIRED}, "leeway": _LEEWAY_SECONDS},
            )
        except JOSEError:
            raise InvalidToken("the access token is invalid or expired") from None
        return _claims(claims)


def _claims(claims: dict[str, Any]) -> AccessClaims:
    try:
        roles = frozenset(Role(value) for value in claims.get("roles", []))
        schools = frozenset(str(s) for s in claims.get("schools", []))
        country = claims.get("country")
        scope = claims.get("scope")
        for value in (claims["sub"], claims["jti"], claims["sid"]):
            if not isinstance(value, str):
                raise ValueError("identifiers are strings")
        return AccessClaims(
            subject=claims["sub"],
            token_id=claims["jti"],
            session_id=claims["sid"],
            roles=roles,
            country=country if isinstance(country, str) else None,
            schools=schools,
            scope=scope if isinstance(scope, str) else None,
            expires_at=int(claims["exp"]),
        )
    except (KeyError, TypeError, ValueError):
        raise InvalidToken("the access token's claims are malformed") from None
