"""The form file format, its rendering and its hashes (pure functions, no database).

A form version is one UTF-8 Markdown file (at most 256 KiB) that starts with YAML front matter::

    ---
    country: BE            # ISO 3166-1 alpha-2
    language: fr           # ISO 639-1; one of the country rule's languages, or en
    version: 1             # integer >= 1, increasing per country and language
    valid_until: 2028-08-31   # optional: consents given under this version expire that day
    purposes:              # every purpose the form asks for, in display order
      questionnaires: {required: true}
      school_records: {required: false}
    ---

The body holds one text per audience (``guardian``, ``child``, ``adult``), each opened by a marker
line, and inside each text one section per listed purpose, opened by a purpose marker. A ``general``
marker goes back to text that belongs to no single purpose (rights, contact, withdrawal)::

    <!-- audience: guardian -->
    # Consent form for parents            <- the first line of a text is its title (level-1 heading)
    Who we are, why we ask ...
    <!-- purpose: questionnaires -->
    ## Questionnaires at school
    ...
    <!-- general -->
    ## Your rights
    ...

Markers are whole lines written as HTML comments, so any Markdown preview hides them. Every listed
purpose has exactly one non-empty section in every audience's text and no section names an unlisted
purpose: consent stays unbundled. Text before the first audience marker is refused, and so is any
other line starting with ``<!--`` (raw HTML is not rendered: it would reach families as visible text).

Rendering: CommonMark (markdown-it-py ``MarkdownIt("commonmark", {"html": False})``): raw HTML is
escaped, never passed through, so an author cannot inject a script; links to ``javascript:`` and
similar schemes are not made links. Each segment between markers is rendered on its own and the
text's HTML is the concatenation of the segments' HTML in file order, a purpose's segment wrapped
as ``<section class="consent-purpose" data-purpose="CODE">\\n...</section>\\n`` so pages can put the
purpose's choice next to its wording.

Hashes (all SHA-256, lower-case hex; audience order is alphabetical: ``adult``, ``child``,
``guardian``):

* a text's ``sha256`` = SHA-256 of its ``rendered_html`` encoded as UTF-8 — the exact text shown;
* the form's ``sha256`` = SHA-256 of the ASCII concatenation of the three text hashes in audience
  order (192 hex characters);
* a purpose's ``section_sha256`` = SHA-256 of the ASCII concatenation, in audience order, of the
  SHA-256 of the purpose's section HTML in that text (without its ``<section>`` wrapper) after
  normalising whitespace (every run of whitespace becomes one space; leading and trailing removed).
  Re-wrapping lines leaves it unchanged; any change of wording, in any audience, changes it. The
  ``required`` flag is not part of it: it changes what is asked, not what a decision agreed to.

The stored ``markdown`` of a text is its part of the file between its audience marker and the next
(markers included, surrounding blank lines removed); ``render_text`` of it gives back the stored
HTML exactly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import yaml
from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from consent.forms.exceptions import FormTooLarge, InvalidForm
from consent.forms.models import Audience

MAX_FILE_BYTES = 256 * 1024
MAX_TITLE_CHARS = 200
AUDIENCE_ORDER: tuple[Audience, ...] = (Audience.adult, Audience.child, Audience.guardian)
"""Order of the texts in every hash: alphabetical by audience code."""

_MARKER = re.compile(r"^<!--\s*(?:(audience|purpose)\s*:\s*([A-Za-z0-9_-]*)|(general))\s*-->\s*$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.DOTALL)
_WHITESPACE = re.compile(r"\s+")
_markdown = MarkdownIt("commonmark", {"html": False})


def sha256_hex(text: str) -> str:
    """SHA-256 of a text encoded as UTF-8, lower-case hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_html(html: str) -> str:
    """Whitespace-insensitive form of rendered HTML, for purpose section hashes."""
    return _WHITESPACE.sub(" ", html).strip()


class PurposeEntry(BaseModel):
    """A purpose as listed in the front matter."""

    model_config = ConfigDict(extra="forbid")

    required: StrictBool


class FrontMatter(BaseModel):
    """The YAML header of a form file."""

    model_config = ConfigDict(extra="forbid")

    country: StrictStr = Field(min_length=1, max_length=8)
    language: StrictStr = Field(min_length=1, max_length=8)
    version: StrictInt = Field(ge=1, le=1_000_000)
    valid_until: date | None = None
    purposes: dict[StrictStr, PurposeEntry] = Field(min_length=1)


@dataclass(frozen=True)
class RenderedText:
    """One audience's text: source, title, HTML, its hash and the hash input of each purpose."""

    audience: Audience
    title: str
    markdown: str
    html: str
    sha256: str
    section_html: dict[str, str]
    """Each purpose's section HTML (without wrapper), normalised: what ``section_sha256`` covers."""


@dataclass(frozen=True)
class ParsedForm:
    """A form file that passed every check that needs no database."""

    front: FrontMatter
    texts: dict[Audience, RenderedText]
    sha256: str
    section_sha256: dict[str, str]
    source_sha256: str
    """SHA-256 of the file's bytes as uploaded."""

    @property
    def purposes(self) -> dict[str, bool]:
        """Purpose code → required, in front-matter order."""
        return {code: entry.required for code, entry in self.front.purposes.items()}


def form_sha256(text_hashes: Mapping[Audience, str]) -> str:
    """The form's identity from its three text hashes (see the module docstring)."""
    return sha256_hex("".join(text_hashes[a] for a in AUDIENCE_ORDER))


def section_sha256(sections: Mapping[Audience, str]) -> str:
    """A purpose's hash from its normalised section HTML in each audience's text."""
    return sha256_hex("".join(sha256_hex(sections[a]) for a in AUDIENCE_ORDER))


def decode(content: bytes) -> str:
    """The file as text: size and UTF-8 checked, BOM dropped, line endings made ``\\n``."""
    if len(content) > MAX_FILE_BYTES:
        raise FormTooLarge(f"a form file may be at most {MAX_FILE_BYTES // 1024} KiB; this one is larger")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidForm(
            "encoding", f"the file is not valid UTF-8 (byte {exc.start})", code="not_utf8", location="file"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _front_matter(text: str) -> tuple[FrontMatter, str, int]:
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise InvalidForm(
            "front_matter",
            "the file must start with YAML front matter between two '---' lines",
            code="missing_front_matter",
            location="file",
        )
    try:
        data: Any = yaml.safe_load(match.group(1) or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise InvalidForm(
            "front_matter", f"invalid YAML{where}: {problem}", code="bad_yaml", location="file"
        ) from None
    if not isinstance(data, dict):
        raise InvalidForm(
            "front_matter",
            "must be a YAML mapping of fields",
            code="front_matter_not_mapping",
            location="file",
        )
    for name in ("country", "language"):
        if isinstance(data.get(name), bool):
            # YAML 1.1 reads NO (Norway) and no (Norwegian) as false.
            raise InvalidForm(
                name,
                "YAML read the code as a yes/no value: put it in quotes (e.g. 'NO')",
                code=f"invalid_{name}",
                location="front_matter",
            )
    try:
        front = FrontMatter.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "front_matter"
        raise InvalidForm(
            field, error["msg"], code=f"invalid_{error['loc'][0]}", location="front_matter"
        ) from None
    body_first_line = text[: match.end()].count("\n") + 1
    return front, text[match.end() :], body_first_line


def _render_segment(markdown: str) -> str:
    html: str = _markdown.render(markdown)
    return html


def render_text(audience: Audience, markdown: str) -> RenderedText:
    """Render one audience's marked-up Markdown; InvalidForm when its markers or title are wrong."""
    general: list[str] = []
    segments: list[tuple[str | None, list[str]]] = [(None, general)]
    seen: set[str] = set()
    for number, line in enumerate(markdown.split("\n"), start=1):
        marker = _MARKER.match(line.strip())
        if marker is None:
            if line.lstrip().startswith("<!--"):
                raise InvalidForm(
                    f"{audience.value}.line_{number}",
                    "only '<!-- purpose: CODE -->' and '<!-- general -->' markers are allowed inside a "
                    "text; raw HTML is shown to families as text",
                    code="unknown_marker",
                )
            segments[-1][1].append(line)
            continue
        kind, code = marker.group(1), marker.group(2)
        if kind == "audience":
            raise InvalidForm(
                f"{audience.value}.line_{number}", "an audience marker inside a text", code="nested_audience"
            )
        if kind == "purpose":
            if code in seen:
                raise InvalidForm(
                    f"{audience.value}.{code}",
                    "the purpose has two sections in this text; give each purpose one section",
                    code="duplicate_section",
                )
            seen.add(code)
            segments.append((code, []))
        else:
            segments.append((None, []))
    first = next((line for line in general if line.strip()), None)
    if first is None or not first.startswith("# ") or not first[2:].strip():
        raise InvalidForm(
            f"{audience.value}.title",
            "the text must open with its title as a level-1 heading ('# Title')",
            code="missing_title",
        )
    title = first[2:].strip().rstrip("#").strip()
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidForm(
            f"{audience.value}.title", f"at most {MAX_TITLE_CHARS} characters", code="title_too_long"
        )
    html_parts: list[str] = []
    sections: dict[str, str] = {}
    for code, lines in segments:
        html = _render_segment("\n".join(lines))
        if code is None:
            html_parts.append(html)
            continue
        if not html.strip():
            raise InvalidForm(
                f"{audience.value}.{code}", "the purpose's section has no text", code="empty_section"
            )
        sections[code] = normalise_html(html)
        html_parts.append(f'<section class="consent-purpose" data-purpose="{code}">\n{html}</section>\n')
    html = "".join(html_parts)
    return RenderedText(
        audience=audience,
        title=title,
        markdown=markdown,
        html=html,
        sha256=sha256_hex(html),
        section_html=sections,
    )


def _split_audiences(body: str, first_line: int) -> dict[Audience, str]:
    texts: dict[Audience, list[str]] = {}
    current: list[str] | None = None
    for offset, line in enumerate(body.split("\n")):
        marker = _MARKER.match(line.strip())
        if marker is not None and marker.group(1) == "audience":
            name = marker.group(2)
            try:
                audience = Audience(name)
            except ValueError:
                raise InvalidForm(
                    f"line_{first_line + offset}",
                    f"unknown audience {name!r}; use guardian, child or adult",
                    code="unknown_audience",
                ) from None
            if audience in texts:
                raise InvalidForm(audience.value, "the audience has two texts", code="duplicate_audience")
            current = texts[audience] = []
            continue
        if current is None:
            if line.strip():
                raise InvalidForm(
                    f"line_{first_line + offset}",
                    "text before the first '<!-- audience: ... -->' marker belongs to no audience",
                    code="text_outside_audience",
                )
            continue
        current.append(line)
    for audience in AUDIENCE_ORDER:
        if audience not in texts:
            raise InvalidForm(
                audience.value,
                f"the form has no text for the {audience.value} audience",
                code="missing_audience",
            )
    return {audience: "\n".join(lines).strip("\n") for audience, lines in texts.items()}


def parse_form(content: bytes, purposes: Mapping[str, bool]) -> ParsedForm:
    """Check and render a form file against the known purposes (code → special category).

    Raises InvalidForm (422) or FormTooLarge (413) naming the problem; country and language codes
    and the country rule are checked by the service, which has the database.
    """
    text = decode(content)
    front, body, first_line = _front_matter(text)
    for code, entry in front.purposes.items():
        if code not in purposes:
            raise InvalidForm(
                f"purposes.{code}",
                f"unknown purpose; known purposes: {', '.join(purposes)}",
                code="unknown_purpose",
                location="front_matter",
            )
        if purposes[code] and entry.required:
            raise InvalidForm(
                f"purposes.{code}",
                "a special-category purpose needs explicit consent given freely: it cannot be required",
                code="special_category_required",
                location="front_matter",
            )
    rendered: dict[Audience, RenderedText] = {}
    for audience, markdown in _split_audiences(body, first_line).items():
        if not markdown.strip():
            raise InvalidForm(audience.value, "the text is empty", code="empty_text")
        result = render_text(audience, markdown)
        for code in result.section_html:
            if code not in front.purposes:
                known = code in purposes
                raise InvalidForm(
                    f"{audience.value}.{code}",
                    "a section for a purpose the front matter does not list"
                    if known
                    else "a section for an unknown purpose",
                    code="unlisted_purpose" if known else "unknown_purpose",
                )
        for code in front.purposes:
            if code not in result.section_html:
                raise InvalidForm(
                    f"{audience.value}.{code}",
                    f"the purpose is listed but this text has no '<!-- purpose: {code} -->' section for it",
                    code="missing_section",
                )
        rendered[audience] = result
    return ParsedForm(
        front=front,
        texts=rendered,
        sha256=form_sha256({a: t.sha256 for a, t in rendered.items()}),
        section_sha256={
            code: section_sha256({a: rendered[a].section_html[code] for a in AUDIENCE_ORDER})
            for code in front.purposes
        },
        source_sha256=hashlib.sha256(content).hexdigest(),
    )
