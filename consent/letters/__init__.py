"""Printed invitation letters: a PDF for families without email, with a QR code and a short code.

Interface::

    from consent.letters import Letter, render_letters

    pdf: bytes = render_letters([
        Letter(
            language="bg",                 # en, es, bg, pl, fr, nl; "bg-BG" works; others print in English
            recipient_name="Мария Иванова", # a guardian, or "" ("Dear parent or guardian", "Dear student")
            children=["5B – A."],          # printed as given after "This letter is about:"; may be empty
            school_name="...",
            link="https://consent.example/f/<token>",  # encoded exactly in the QR code, never printed
            short_code="K7QP-M2XD-9B",     # printed large in a monospaced font
            code_page="https://consent.example/code",  # where the code is typed
            expires_on=date(2027, 1, 15),  # "Please answer by ...", written in the letter's language
            kind="guardian",               # "guardian" | "student" | "teacher"
        ),
    ])

``render_letters`` returns one A4 PDF in which every letter starts on a new page (a letter that
does not fit spills onto a second page, so count pages, not letters). Each letter says who writes
(the LET'S CARE research team with the school), what is asked (read the form and decide per
purpose; a child may also be asked), how (scan the QR code, or type the code on the code page), by
when, that saying no has no consequences at school, that the school helps and has paper forms, and
that the code is personal. Students and teachers get their own shorter wording. It raises
``InvalidLetter`` (422) for an empty batch, an unknown kind, or a missing link, code or page.

The document properties hold only a neutral title (``LET'S CARE – invitation``), never a name;
apart from the creation date the output is the same for the same letters.

Fonts: DejaVu Sans and DejaVu Sans Mono (Latin with Polish, Spanish, French and Dutch letters,
and Cyrillic) are vendored in ``fonts/`` with their licence, unmodified, because that is the one
choice that works the same on a fresh clone, in CI and in the slim Docker image without any
system package or download at run time; fpdf2 embeds only the glyphs used, so the PDFs stay small.
Right-to-left scripts are not shaped: names in Arabic script would print unjoined.

The QR code is a PNG drawn by segno with the standard four-module quiet zone, placed at 48 mm
(the symbol itself is above 35 mm), black on white; the words never rely on colour.
"""

from consent.letters.exceptions import InvalidLetter
from consent.letters.render import DOCUMENT_TITLE, Letter, render_letters
from consent.letters.texts import LANGUAGES

__all__ = ["DOCUMENT_TITLE", "LANGUAGES", "InvalidLetter", "Letter", "render_letters"]
