"""FastAPI dependencies shared by every domain router."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from infra.db import session_scope
from infra.settings import Settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request: committed before the response is sent, rolled back on any error."""
    with session_scope(request.app.state.components.session_factory) as session:
        yield session


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


# scope="function" closes the session (and so commits) before the response is sent: a failed
# commit becomes an error response instead of a success for data that was never stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
