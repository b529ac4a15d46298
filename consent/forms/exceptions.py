"""Errors of consent forms, each mapped to a problem document by the shared hierarchy."""

from __future__ import annotations

from infra.errors import Conflict, InvalidField, NotFound, PayloadTooLarge


class InvalidForm(InvalidField):
    """A form file breaks a rule of the format; the answer names the field (or line) and the reason.

    ``location`` is ``file`` (the bytes), ``front_matter`` (the YAML header) or ``body`` (the texts).
    """


class FormTooLarge(PayloadTooLarge):
    """A form file is larger than a form can reasonably be."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, extra={"reason": "file_too_large"})
        self.code = "file_too_large"


class FormVersionConflict(Conflict):
    """The file clashes with the versions already published (taken version, lower version, same text)."""

    def __init__(self, detail: str, *, code: str, existing_sha256: str | None = None) -> None:
        extra: dict[str, str] = {"reason": code}
        if existing_sha256 is not None:
            extra["existing_sha256"] = existing_sha256
        super().__init__(detail, extra=extra)
        self.code = code


class FormNotFound(NotFound):
    """No published form matches."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, extra={"reason": "form_not_found"})
