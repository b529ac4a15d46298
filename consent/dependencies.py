"""Dependencies of the consent endpoints beyond who may call (that is ``access.dependencies``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from consent.identity import IdentityProtector
from infra.keys import KeyBackend


def identity_protector(request: Request) -> IdentityProtector:
    """The process's identity protector, built once per app so data keys are unwrapped once."""
    state = request.app.state
    protector: IdentityProtector | None = getattr(state, "identity_protector", None)
    if protector is None:
        protector = IdentityProtector(state.components.keys)
        state.identity_protector = protector
    return protector


IdentityDep = Annotated[IdentityProtector, Depends(identity_protector)]


def key_backend(request: Request) -> KeyBackend:
    """The process's key-management backend (key file or Vault/OpenBao transit)."""
    keys: KeyBackend = request.app.state.components.keys
    return keys


KeysDep = Annotated[KeyBackend, Depends(key_backend)]
