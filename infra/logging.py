"""Structured logging: JSON lines with event names, the request id, and no personal data.

Personal data is wrapped in :class:`Pii` before it may reach a log call; the renderer prints a mask
for it. A final processor also masks values of keys that commonly carry personal data, so a
careless ``log.info("x", email=...)`` still does not leak.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_MASK = "***"
_PERSONAL_KEYS = frozenset(
    {"email", "name", "first_name", "last_name", "full_name", "birth_date", "address", "phone", "password"}
)


class Pii:
    """A value that is personal data: usable in code, masked whenever it is printed or logged."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return _MASK

    __str__ = __repr__


def _add_request_id(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def _mask_personal(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if isinstance(value, Pii) or key.lower() in _PERSONAL_KEYS:
            event_dict[key] = _MASK
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the moment of writing, not at configuration time.

    A process that swaps its standard error (test runners, daemonisers) must not leave the loggers
    writing into a closed stream.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and the standard library root logger once per process."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_personal,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log prints full URLs, which carry single-use family tokens; our own
    # request log line replaces it.
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; call it with an event name and pseudonymous fields only."""
    return structlog.get_logger(name)
