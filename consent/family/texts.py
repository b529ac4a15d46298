"""How a form text is laid out on the family pages (pure functions on the published HTML).

The published HTML wraps each purpose's wording in ``<section class="consent-purpose"
data-purpose="CODE">`` (see ``consent.forms.rendering``): the decide page cuts the text there so the
question about a purpose sits right after its wording. The text itself is shown unchanged, in order;
only its leading title is lifted to be the page's level-1 heading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from consent.forms.models import Audience, ConsentForm
from consent.forms.service import text_for

_SECTION = re.compile(
    r'<section class="consent-purpose" data-purpose="([a-z_]+)">\n?(.*?)</section>\n?', re.DOTALL
)


@dataclass(frozen=True)
class Question:
    """One purpose of the form as the page asks it."""

    code: str
    required: bool
    html: Markup | None
    """The purpose's section of the text, or None when the text has no section for it."""


def segments(form: ConsentForm, audience: Audience) -> tuple[list[tuple[str, Any]], list[Question]]:
    """The text shown, split so each purpose's answer sits right after its wording."""
    text = text_for(form, audience)
    flags = {p.purpose: p.required for p in form.purposes}
    parts: list[tuple[str, Any]] = []
    questions: dict[str, Question] = {}
    position = 0
    for match in _SECTION.finditer(text.rendered_html):
        if match.start() > position:
            parts.append(("text", Markup(text.rendered_html[position : match.start()])))  # noqa: S704
        code, body = match.group(1), match.group(2)
        # The form's HTML is rendered with raw HTML disabled at publication, so it is safe to show.
        question = Question(code, flags.get(code, False), Markup(body))  # noqa: S704
        if code in flags:
            questions[code] = question
            parts.append(("purpose", question))
        else:
            parts.append(("text", Markup(body)))  # noqa: S704
        position = match.end()
    if position < len(text.rendered_html):
        parts.append(("text", Markup(text.rendered_html[position:])))  # noqa: S704
    for purpose in form.purposes:
        if purpose.purpose not in questions:
            question = Question(purpose.purpose, purpose.required, None)
            questions[purpose.purpose] = question
            parts.append(("purpose", question))
    # In the order the text asks them (the order of the form's purposes list).
    ordered = [part for kind, part in parts if kind == "purpose"]
    return parts, ordered


_LEADING_H1 = re.compile(r"\A\s*<h1>(.*?)</h1>\n?", re.DOTALL)


def title_first(parts: list[tuple[str, Any]]) -> tuple[Markup | None, list[tuple[str, Any]]]:
    """The text's own title (its leading level-1 heading) becomes the page's one h1."""
    if parts and parts[0][0] == "text":
        match = _LEADING_H1.match(str(parts[0][1]))
        if match:
            rest = str(parts[0][1])[match.end() :]
            return Markup(match.group(1)), [("text", Markup(rest)), *parts[1:]]  # noqa: S704
    return None, parts


def demoted(html: str) -> Markup:
    """A form text shown inside a page: its headings two levels down, so the page keeps one h1."""
    shifted = re.sub(r"<(/?)h([1-6])>", lambda m: f"<{m[1]}h{min(int(m[2]) + 2, 6)}>", html)
    return Markup(shifted)  # noqa: S704
