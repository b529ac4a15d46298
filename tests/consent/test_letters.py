"""Printed invitation letters: what a family reads on the page and what their phone reads in the QR code."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pypdfium2 as pdfium
import pytest
import zxingcpp

from consent.letters import DOCUMENT_TITLE, LANGUAGES, InvalidLetter, Letter, render_letters
from consent.letters.texts import KEYS, KINDS, TEXTS

CODE_PAGE = "https://consent.example/code"

# A phrase each guardian letter must show, written natively, and the expiry date in that language.
EXPECTED = {
    "en": ("Saying no has no consequences for your child at school.", "15 January 2027"),
    "es": (
        "Decir que no no tiene ninguna consecuencia para su hijo o hija en el centro.",
        "15 de enero de 2027",
    ),
    "bg": ("Ако откажете, това няма никакви последици за детето Ви в училище.", "15 януари 2027 г."),
    "pl": ("Odmowa nie ma żadnych konsekwencji dla dziecka w szkole.", "15 stycznia 2027"),
    "fr": ("Dire non n'a aucune conséquence pour votre enfant à l'école.", "15 janvier 2027"),
    "nl": ("Nee zeggen heeft geen gevolgen voor uw kind op school.", "15 januari 2027"),
}


def make_letter(number: int = 0, **changes: object) -> Letter:
    letter = Letter(
        language="en",
        recipient_name="Maria Ivanova",
        children=["5B – A."],
        school_name="Escola Sant Jordi",
        link=f"https://consent.example/f/tok{number:04d}-Qx7pL2mZr9KfW3vB8nYc5dHs6tJ4gE1a",
        short_code=f"K7QP-M2XD-{number:04d}",
        code_page=CODE_PAGE,
        expires_on=date(2027, 1, 15),
        kind="guardian",
    )
    return replace(letter, **changes)  # type: ignore[arg-type]


def flat(text: str) -> str:
    """Page text with line breaks and no-break spaces as plain spaces, as a reader sees the words."""
    return " ".join(text.replace("\u00a0", " ").replace("\ufffe", "").split())


def pages_text(pdf: bytes) -> list[str]:
    document = pdfium.PdfDocument(pdf)
    try:
        return [flat(page.get_textpage().get_text_range()) for page in document]
    finally:
        document.close()


def qr_codes_per_page(pdf: bytes) -> list[list[str]]:
    """Decode every page as a phone would see it: a 150 dpi image read by a real QR decoder."""
    document = pdfium.PdfDocument(pdf)
    try:
        found = []
        for page in document:
            image = page.render(scale=150 / 72).to_pil()
            found.append(
                [
                    result.text
                    for result in zxingcpp.read_barcodes(image)
                    if result.format == zxingcpp.BarcodeFormat.QRCode
                ]
            )
        return found
    finally:
        document.close()


@pytest.mark.parametrize("language", sorted(EXPECTED))
def test_guardian_letter_is_written_in_the_family_language(language):
    phrase, expiry = EXPECTED[language]
    pdf = render_letters([make_letter(language=language)])

    (page,) = pages_text(pdf)
    assert phrase in page
    assert expiry in page
    assert "K7QP-M2XD-0000" in page
    assert CODE_PAGE in page
    assert "Escola Sant Jordi" in page
    assert "5B – A." in page


def test_bulgarian_letter_prints_cyrillic_and_not_placeholder_glyphs():
    pdf = render_letters([make_letter(language="bg", recipient_name="Мария Иванова")])

    (page,) = pages_text(pdf)
    assert "Здравейте, Мария Иванова," in page
    assert "Този код е личен. Не го давайте на никого." in page
    assert "�" not in page


def test_qr_code_on_every_letter_decodes_to_its_exact_link():
    letters = [make_letter(n, language=lang) for n, lang in enumerate(sorted(EXPECTED))]

    codes = qr_codes_per_page(render_letters(letters))

    assert codes == [[letter.link] for letter in letters]


def test_qr_code_of_a_long_link_still_decodes():
    link = "https://consent.letscare-project.example.eu/f/" + "Ab9_-" * 30

    (codes,) = qr_codes_per_page(render_letters([make_letter(link=link)]))

    assert codes == [link]


def test_each_letter_starts_on_its_own_page_in_the_given_order():
    letters = [make_letter(n, language=lang) for n, lang in enumerate(["pl", "bg", "en", "nl", "fr"])]

    pages = pages_text(render_letters(letters))

    assert len(pages) >= len(letters)
    first_pages = [next(i for i, text in enumerate(pages) if letter.short_code in text) for letter in letters]
    assert first_pages == sorted(first_pages)
    assert len(set(first_pages)) == len(letters)
    for index, text in enumerate(pages):
        others = [letter for letter in letters if letter.short_code in text]
        assert len(others) <= 1, f"page {index} mixes two letters"


def test_letter_too_long_for_one_page_marks_its_second_page_with_the_code():
    long_school = "Szkoła Podstawowa nr 123 im. Marii Skłodowskiej-Curie w Gorzowie Wielkopolskim " * 3
    letter = make_letter(language="pl", school_name=long_school, children=[f"{n}A – K." for n in range(40)])

    pages = pages_text(render_letters([letter, make_letter(1)]))

    assert len(pages) >= 3
    assert all(letter.short_code in text for text in pages[:-1])
    assert "K7QP-M2XD-0001" in pages[-1]


def test_unsupported_language_falls_back_to_english():
    pdf = render_letters([make_letter(language="pt"), make_letter(1, language="")])

    for page in pages_text(pdf):
        assert "Dear Maria Ivanova," in page
        assert EXPECTED["en"][0] in page


def test_regional_language_tags_use_the_language():
    (page,) = pages_text(render_letters([make_letter(language="nl-BE")]))

    assert EXPECTED["nl"][0] in page


@pytest.mark.parametrize(
    "name",
    [
        "Łucja Żółkiewska-Wiśniewska",
        "Zoë Ñúñez Peña",
        "Hélène Çelik",
        "Ivana Đurić",
        "Мария Иванова",
        "Jiří Dvořák",
    ],
)
def test_names_with_diacritics_are_printed_as_written(name):
    (page,) = pages_text(render_letters([make_letter(recipient_name=name, children=[f"{name} (4B)"])]))

    assert f"Dear {name}," in page
    assert f"{name} (4B)" in page


def test_decomposed_diacritics_are_printed_composed():
    (page,) = pages_text(render_letters([make_letter(recipient_name="Zoe\u0308 N\u0303u\u0301n\u0303ez")]))

    assert "Dear Zoë Ñúñez," in page


def test_guardian_letter_without_a_name_greets_parent_or_guardian():
    (page,) = pages_text(render_letters([make_letter(recipient_name="", children=[])]))

    assert "Dear parent or guardian," in page
    assert "This letter is about" not in page


def test_student_letter_is_addressed_to_the_student():
    (page,) = pages_text(render_letters([make_letter(kind="student", recipient_name="", children=[])]))

    assert "Dear student," in page
    assert "Do you want to take part in LET'S CARE?" in page
    assert "nothing changes for you at school" in page
    assert "your child" not in page


def test_teacher_letter_is_addressed_to_the_teacher():
    (page,) = pages_text(
        render_letters([make_letter(kind="teacher", language="bg", recipient_name="", children=[])])
    )

    assert "Уважаеми колеги," in page
    assert "работата Ви в училището" in page
    assert "детето" not in page


def test_every_letter_says_what_a_family_must_know():
    letter_text = TEXTS["en"]["guardian"]
    (page,) = pages_text(render_letters([make_letter()]))

    for key in ("scan", "visit", "type_code", "personal", "help", "no_consequences", "ask"):
        assert flat(letter_text[key]) in page, key
    assert "Please answer by 15 January 2027." in page
    assert "The LET'S CARE research team and Escola Sant Jordi" in page


def test_every_language_has_every_sentence_for_every_kind():
    assert set(LANGUAGES) == {"en", "es", "bg", "pl", "fr", "nl"}
    for language, kinds in TEXTS.items():
        assert set(kinds) == KINDS, language
        for kind, words in kinds.items():
            assert set(words) == set(KEYS), (language, kind)


@pytest.mark.parametrize("language", sorted(EXPECTED))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_variant_fits_on_one_page_and_scans(language, kind):
    letter = make_letter(language=language, kind=kind)

    pdf = render_letters([letter])

    assert qr_codes_per_page(pdf) == [[letter.link]]


def test_bulgarian_date_ends_the_sentence_with_a_single_full_stop():
    (page,) = pages_text(render_letters([make_letter(language="bg")]))

    assert "Моля, отговорете до 15 януари 2027 г. " in page + " "
    assert "г.." not in page


def test_document_properties_hold_no_names():
    name = "Łucja Żółkiewska"
    pdf = render_letters([make_letter(recipient_name=name, school_name="Szkoła nr 5")])

    document = pdfium.PdfDocument(pdf)
    metadata = document.get_metadata_dict()
    document.close()
    assert metadata["Title"] == DOCUMENT_TITLE
    assert metadata.get("Author", "") == ""
    assert metadata.get("Subject", "") == ""
    assert metadata.get("Keywords", "") == ""
    assert not any(part in value for value in metadata.values() for part in ("Łucja", "Żółkiewska", "Szkoła"))
    assert b"Lucja" not in pdf


def test_same_letters_give_the_same_pages():
    letters = [make_letter(n, language=lang) for n, lang in enumerate(["bg", "pl"])]

    first, second = render_letters(letters), render_letters(letters)

    def images(pdf: bytes) -> list[bytes]:
        document = pdfium.PdfDocument(pdf)
        try:
            return [page.render(scale=1).to_pil().tobytes() for page in document]
        finally:
            document.close()

    assert images(first) == images(second)


@pytest.mark.slow
def test_a_whole_school_of_letters_renders_with_every_code():
    languages = sorted(EXPECTED)
    kinds = ["guardian", "guardian", "guardian", "student", "teacher"]
    letters = [
        make_letter(n, language=languages[n % len(languages)], kind=kinds[n % len(kinds)]) for n in range(120)
    ]

    pdf = render_letters(letters)

    pages = pages_text(pdf)
    assert len(pages) >= 120
    everything = " ".join(pages)
    assert all(letter.short_code in everything for letter in letters)
    document = pdfium.PdfDocument(pdf)
    last = document[len(document) - 1].render(scale=150 / 72).to_pil()
    document.close()
    assert [r.text for r in zxingcpp.read_barcodes(last)] == [letters[-1].link]


def test_an_empty_batch_is_refused():
    with pytest.raises(InvalidLetter) as caught:
        render_letters([])

    assert caught.value.code == "no_letters"


def test_an_unknown_kind_is_refused_naming_the_letter():
    with pytest.raises(InvalidLetter) as caught:
        render_letters([make_letter(), make_letter(1, kind="headmaster")])

    assert caught.value.code == "unknown_letter_kind"
    assert caught.value.field == "letters[1].kind"


@pytest.mark.parametrize("field", ["link", "short_code", "code_page", "school_name"])
def test_a_letter_without_the_means_to_answer_is_refused(field):
    with pytest.raises(InvalidLetter) as caught:
        render_letters([make_letter(**{field: "  "})])

    assert caught.value.code == "letter_field_empty"
    assert caught.value.field == f"letters[0].{field}"


def test_a_link_with_spaces_is_refused_rather_than_encoded_wrongly():
    with pytest.raises(InvalidLetter) as caught:
        render_letters([make_letter(link="https://consent.example/f/abc def")])

    assert caught.value.code == "letter_link_invalid"


def test_control_characters_in_names_do_not_reach_the_page():
    (page,) = pages_text(render_letters([make_letter(recipient_name="Maria\u202e Ivanova\n\x00")]))

    assert "Dear Maria Ivanova," in page


@pytest.mark.parametrize("link", ["https://c.eu/f/a", "https://consent.example/f/" + "Qx7pL2mZr9" * 5])
def test_qr_symbol_is_printed_at_least_35_mm_wide(link):
    dpi = 150
    document = pdfium.PdfDocument(render_letters([make_letter(link=link)]))
    image = document[0].render(scale=dpi / 72).to_pil()
    document.close()

    (result,) = zxingcpp.read_barcodes(image)

    width_mm = (result.position.top_right.x - result.position.top_left.x) / dpi * 25.4
    assert result.text == link
    assert width_mm >= 35
