"""Lay out invitation letters on A4 pages with fpdf2 (see the package docstring for the interface)."""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final

import segno
from babel.dates import format_date
from fpdf import FPDF
from fpdf.enums import Align, WrapMode, XPos, YPos

from consent.letters.exceptions import InvalidLetter
from consent.letters.texts import KINDS, TEXTS, letter_language

FONT_DIR: Final = Path(__file__).parent / "fonts"
_FONTS: Final = {
    ("Sans", ""): "DejaVuSans.ttf",
    ("Sans", "B"): "DejaVuSans-Bold.ttf",
    ("Mono", "B"): "DejaVuSansMono-Bold.ttf",
}

DOCUMENT_TITLE: Final = "LET'S CARE – invitation"

# Sizes in mm and pt. Body text at 13 pt and the code at 18-24 pt stay readable for people with
# weaker sight and on cheap school printers.
MARGIN: Final = 20.0
TOP_MARGIN: Final = 15.0
BODY_PT: Final = 13.0
TITLE_PT: Final = 16.0
CODE_MAX_PT: Final = 24.0
CODE_MIN_PT: Final = 18.0
LINE: Final = 6.5
QR_SIZE: Final = 48.0  # the whole image, quiet zone included: the symbol itself stays above 35 mm
QR_BORDER_MODULES: Final = 4  # the quiet zone the QR standard asks for
QR_MIN_VERSION: Final = 3  # 29 modules: the symbol is at least 48 mm x 29/37, about 37.6 mm
BOX_PAD: Final = 5.0
BOX_GAP: Final = 6.0
BOX_MIN_HEIGHT: Final = QR_SIZE + 2 * BOX_PAD + 10

# Schools in Europe write "15 January 2027", not the US order Babel uses for plain "en".
_DATE_LOCALES: Final = {"en": "en_GB"}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Letter:
    """One invitation: who it is for, in which language, and how to open the consent pages."""

    language: str
    recipient_name: str
    children: list[str] = field(hash=False)  # a list cannot be hashed; the other fields identify a letter
    school_name: str
    link: str
    short_code: str
    code_page: str
    expires_on: date
    kind: str


def render_letters(letters: Sequence[Letter]) -> bytes:
    """One A4 PDF holding every letter, each starting on a new page, in the order given.

    Raises ``InvalidLetter`` (a 422 problem if it reaches the API) when there is nothing to print
    or a letter lacks what a family needs to answer (link, code, code page) or has an unknown kind.
    """
    if not letters:
        raise InvalidLetter("letters", "there are no letters to print", code="no_letters")
    for index, letter in enumerate(letters):
        _check(index, letter)
    pdf = _new_document(letters)
    for letter in letters:
        _draw_letter(pdf, letter)
    return bytes(pdf.output())


def _check(index: int, letter: Letter) -> None:
    where = f"letters[{index}]"
    if letter.kind not in KINDS:
        raise InvalidLetter(
            f"{where}.kind",
            f"unknown kind {letter.kind!r}; one of {', '.join(sorted(KINDS))}",
            code="unknown_letter_kind",
        )
    for name in ("link", "short_code", "code_page", "school_name"):
        if not _clean(getattr(letter, name)):
            raise InvalidLetter(f"{where}.{name}", f"{name} is empty", code="letter_field_empty")
    if _CONTROL.search(letter.link) or any(char.isspace() for char in letter.link):
        # The QR code must carry exactly the link; one with spaces or control characters is a bug upstream.
        raise InvalidLetter(
            f"{where}.link", "link contains spaces or control characters", code="letter_link_invalid"
        )


def _clean(text: str) -> str:
    """NFC text without control or direction-override characters, on one line, trimmed."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def _new_document(letters: Sequence[Letter]) -> _LetterPDF:
    missing = [name for name in _FONTS.values() if not (FONT_DIR / name).is_file()]
    if missing:
        raise RuntimeError(
            f"letter fonts missing from {FONT_DIR}: {', '.join(missing)}; the package is incomplete"
        )
    pdf = _LetterPDF(orientation="portrait", unit="mm", format="A4")
    for (family, style), name in _FONTS.items():
        pdf.add_font(family, style, str(FONT_DIR / name))
    pdf.set_margins(MARGIN, TOP_MARGIN, MARGIN)
    pdf.set_auto_page_break(auto=True, margin=MARGIN)
    # Only neutral metadata: the file may be forwarded, and names belong on the page, not in properties.
    pdf.set_title(DOCUMENT_TITLE)
    pdf.set_creator("LET'S CARE")
    pdf.set_producer("LET'S CARE")
    languages = {letter_language(letter.language) for letter in letters}
    if len(languages) == 1:
        pdf.set_lang(languages.pop())
    return pdf


class _LetterPDF(FPDF):
    """An FPDF whose continuation pages repeat the letter's code, so a separated sheet finds its letter."""

    first_page_of_letter = 0
    continuation_mark = ""

    def header(self) -> None:
        if self.page == self.first_page_of_letter or not self.continuation_mark:
            return
        self.set_font("Sans", "", 10)
        self.cell(self.epw, 6, self.continuation_mark, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(4)


def _qr_png(link: str) -> bytes:
    qr = segno.make_qr(link, error="m")
    if isinstance(qr.version, int) and qr.version < QR_MIN_VERSION:
        # A very short link would give a small symbol inside the fixed image; more modules keep it large.
        qr = segno.make_qr(link, error="m", version=QR_MIN_VERSION)
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=10, border=QR_BORDER_MODULES, dark="#000000", light="#ffffff")
    return buffer.getvalue()


def _draw_letter(pdf: _LetterPDF, letter: Letter) -> None:
    language = letter_language(letter.language)
    words = TEXTS[language][letter.kind]
    school = _clean(letter.school_name)
    name = _clean(letter.recipient_name)
    expires = format_date(letter.expires_on, format="long", locale=_DATE_LOCALES.get(language, language))

    def say(key: str) -> str:
        # A date ending in an abbreviation ("15 януари 2027 г.") must not end the sentence twice.
        return words[key].format(school=school, name=name, date=expires).replace("..", ".")

    pdf.first_page_of_letter = pdf.page + 1
    pdf.continuation_mark = f"LET'S CARE · {_clean(letter.short_code)}"
    pdf.add_page()
    width = pdf.epw

    pdf.set_font("Sans", "B", 14)
    pdf.cell(width * 0.35, 7, "LET'S CARE", new_x=XPos.RIGHT, new_y=YPos.TOP)
    pdf.set_font("Sans", "", 11)
    pdf.multi_cell(width * 0.65, 5.5, school, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(pdf.get_y(), pdf.t_margin + 7))
    pdf.set_line_width(0.4)
    pdf.line(MARGIN, pdf.get_y() + 1.5, MARGIN + width, pdf.get_y() + 1.5)
    pdf.ln(6)

    pdf.set_font("Sans", "B", TITLE_PT)
    pdf.multi_cell(width, 8, say("title"), align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    _paragraph(pdf, say("greeting_named") if name else say("greeting"))
    children = [child for child in (_clean(c) for c in letter.children) if child]
    if children:
        pdf.set_font("Sans", "B", BODY_PT)
        pdf.multi_cell(
            width,
            LINE,
            f"{say('children_label')} {', '.join(children)}",
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.ln(2)
    _paragraph(pdf, say("intro"))
    _paragraph(pdf, say("ask"))

    _answer_box(pdf, letter, say)

    _paragraph(pdf, say("no_consequences"))
    _paragraph(pdf, say("help"))
    pdf.ln(2)
    _paragraph(pdf, say("closing"), after=0)
    _paragraph(pdf, say("signature"))


def _paragraph(pdf: FPDF, text: str, *, after: float = 3) -> None:
    pdf.set_font("Sans", "", BODY_PT)
    pdf.multi_cell(pdf.epw, LINE, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if after:
        pdf.ln(after)


def _answer_box(pdf: FPDF, letter: Letter, say: Callable[[str], str]) -> None:
    """The framed block with the QR code on the left and the typed-code route on the right."""
    if pdf.will_page_break(BOX_MIN_HEIGHT + 12):
        pdf.add_page()
    left = pdf.l_margin
    width = pdf.epw
    top = pdf.get_y()

    pdf.set_xy(left + BOX_PAD, top + BOX_PAD)
    pdf.set_font("Sans", "B", 13)
    pdf.cell(width - 2 * BOX_PAD, 7, say("how"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    content_top = pdf.get_y() + 2

    pdf.image(io.BytesIO(_qr_png(letter.link)), x=left + BOX_PAD, y=content_top, w=QR_SIZE, h=QR_SIZE)

    column = left + BOX_PAD + QR_SIZE + BOX_GAP
    column_width = left + width - BOX_PAD - column
    # The right column flows with its own left margin so wrapped lines stay beside the QR code.
    pdf.set_auto_page_break(auto=False)
    pdf.set_left_margin(column)
    pdf.set_xy(column, content_top)
    pdf.set_font("Sans", "", BODY_PT)
    _column_text(pdf, column_width, f"1. {say('scan')}")
    pdf.ln(2)
    _column_text(pdf, column_width, f"2. {say('visit')}")
    pdf.set_font("Sans", "B", BODY_PT)
    _column_text(pdf, column_width, _clean(letter.code_page), wrap_anywhere=True)
    pdf.set_font("Sans", "", BODY_PT)
    _column_text(pdf, column_width, say("type_code"))
    pdf.ln(2)
    _code_cell(pdf, column_width, _clean(letter.short_code))
    pdf.ln(2)
    pdf.set_font("Sans", "B", BODY_PT)
    _column_text(pdf, column_width, say("deadline"))
    text_bottom = pdf.get_y()
    pdf.set_left_margin(MARGIN)

    pdf.set_xy(left + BOX_PAD, max(text_bottom, content_top + QR_SIZE) + 2)
    pdf.set_font("Sans", "B", BODY_PT)
    pdf.multi_cell(
        width - 2 * BOX_PAD,
        LINE,
        f"! {say('personal')}",
        align=Align.L,
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    bottom = pdf.get_y() + BOX_PAD - 1
    pdf.set_line_width(0.6)
    pdf.rect(left, top, width, bottom - top)
    pdf.set_auto_page_break(auto=True, margin=MARGIN)
    pdf.set_xy(left, bottom + 6)


def _column_text(pdf: FPDF, width: float, text: str, *, wrap_anywhere: bool = False) -> None:
    pdf.multi_cell(
        width,
        LINE,
        text,
        align=Align.L,
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
        wrapmode=WrapMode.CHAR if wrap_anywhere else WrapMode.WORD,
    )


def _code_cell(pdf: FPDF, width: float, code: str) -> None:
    """The short code, large and monospaced, in a frame: shrunk (never below 18 pt) to stay on one line."""
    size = CODE_MAX_PT
    pdf.set_font("Mono", "B", size)
    while size > CODE_MIN_PT and pdf.get_string_width(code) + 6 > width:
        size -= 1
        pdf.set_font("Mono", "B", size)
    pdf.set_line_width(0.6)
    height = size * 0.3528 + 6
    if pdf.get_string_width(code) + 6 > width:
        pdf.multi_cell(width, height, code, border=1, align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    else:
        pdf.cell(width, height, code, border=1, align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
