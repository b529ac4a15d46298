"""HTTP endpoints of consent forms and purposes under /api/consent/forms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Path, Query, Response, UploadFile, status

from access.dependencies import CurrentPrincipal, DpoDep
from consent.forms import service
from consent.forms.exceptions import FormNotFound
from consent.forms.rendering import MAX_FILE_BYTES
from consent.forms.schemas import FormRead, FormSummary, PurposeRead
from infra.web.deps import SessionDep

router = APIRouter(prefix="/api/consent/forms", tags=["consent"])

CountryQuery = Annotated[str, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 country code.")]
LanguageQuery = Annotated[str, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 639-1 language code.")]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only the DPO may publish forms."},
    404: {"description": "No such form version, or none published yet."},
    409: {"description": "The version clashes with those already published (immutable, increasing)."},
    413: {"description": "The file is larger than 256 KiB."},
    422: {"description": "The file or a parameter is invalid; the answer names the field and the reason."},
}


@router.get("/purposes", response_model=list[PurposeRead], responses=PROBLEMS)
def list_purposes(principal: CurrentPrincipal, session: SessionDep) -> list[PurposeRead]:
    """Every purpose consent may be asked for, in display order."""
    return [PurposeRead.model_validate(p) for p in service.list_purposes(session)]


@router.get("", response_model=list[FormSummary], responses=PROBLEMS)
def list_forms(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    country: Annotated[
        str | None, Query(pattern=r"^[A-Za-z]{2}$", description="Only this country's forms.")
    ] = None,
    language: Annotated[
        str | None, Query(pattern=r"^[A-Za-z]{2}$", description="Only forms in this language.")
    ] = None,
) -> list[FormSummary]:
    """Published form versions by country, language and version, without their texts."""
    return [
        FormSummary.model_validate(f) for f in service.list_forms(session, country=country, language=language)
    ]


@router.get("/current", response_model=FormRead, responses=PROBLEMS)
def current_form(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    country: CountryQuery,
    language: LanguageQuery,
    on: Annotated[
        datetime | None, Query(description="The instant (default: now); a date-time without zone is UTC.")
    ] = None,
) -> FormRead:
    """The latest version of a country's form in a language published at or before ``on``."""
    when = on or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    form = service.current_form(session, country, language, when)
    if form is None:
        raise FormNotFound(
            f"no {country.upper()}/{language.lower()} form was published by {when.isoformat()}"
        )
    return FormRead.model_validate(form)


@router.get("/{form_id}", response_model=FormRead, responses=PROBLEMS)
def get_form(
    form_id: Annotated[int, Path(ge=1, le=2**31 - 1)], principal: CurrentPrincipal, session: SessionDep
) -> FormRead:
    """One published version with its purposes and its three texts (Markdown, HTML, SHA-256)."""
    return FormRead.model_validate(service.get_form(session, form_id))


@router.post("", response_model=FormRead, status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def publish_form(
    file: Annotated[UploadFile, File(description="The form as a Markdown file with YAML front matter.")],
    principal: DpoDep,
    session: SessionDep,
    response: Response,
) -> FormRead:
    """Publish a form version from its Markdown file (201); the identical file again answers 200.

    A published version never changes: a new wording is a new, higher version.
    """
    content = file.file.read(MAX_FILE_BYTES + 1)
    published = service.publish_form(session, principal.actor, content, file.filename or "upload.md")
    if not published.created:
        response.status_code = status.HTTP_200_OK
    return FormRead.model_validate(published.form)
