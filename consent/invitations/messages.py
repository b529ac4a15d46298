"""Invitation emails in the six LET'S CARE languages: short, plain words, one link, a fallback code.

Every email says who writes and why, gives the personal link and, for when the link does not open,
the code page and the short code, the date until which both work, that taking part is voluntary
and has no consequences at school, and whom to ask (the school, which also has paper forms, or the
research team). Texts are written per language rather than translated word by word; a language
without a text falls back to English.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

from babel.dates import format_date

from consent.invitations.models import InvitationReason, InviteeKind

_DATE_LOCALES: Final = {
    "en": "en_GB",
    "es": "es_ES",
    "bg": "bg_BG",
    "pl": "pl_PL",
    "fr": "fr_FR",
    "nl": "nl_NL",
}

TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "subject.invitation": "LET'S CARE: we ask for your consent",
        "subject.reminder": "Reminder: LET'S CARE is waiting for your decision",
        "subject.reconsent": "LET'S CARE: please decide again",
        "greeting.guardian": "Dear parent or guardian,",
        "greeting.student": "Hello,",
        "greeting.teacher": "Dear teacher,",
        "about.guardian": "your child taking part in the LET'S CARE research project at school {school}",
        "about.other": "you taking part in the LET'S CARE research project at school {school}",
        "lead.invitation": "We invite you to decide about {about}.",
        "lead.reminder": "A reminder: we have not yet received your decision about {about}. "
        "This new link replaces the earlier one.",
        "lead.reconsent": "Something has changed, so we ask you to decide again about {about}.",
        "how": "Open this link to read the form and decide on each purpose:",
        "code": "If the link does not work, go to {code_page} and type this code: {code}",
        "expires": "The link and the code work once, until {date}.",
        "voluntary": "Taking part is voluntary. Saying no has no consequences at school, "
        "and you can change your mind at any time.",
        "contact": "Questions? Ask the school ({school}) or the LET'S CARE research team. "
        "The school also has paper forms.",
        "personal": "This link is personal: please do not forward it.",
        "sign": "The LET'S CARE research team",
    },
    "es": {
        "subject.invitation": "LET'S CARE: le pedimos su consentimiento",
        "subject.reminder": "Recordatorio: LET'S CARE espera su decisión",
        "subject.reconsent": "LET'S CARE: le pedimos que decida de nuevo",
        "greeting.guardian": "Estimada familia:",
        "greeting.student": "Hola:",
        "greeting.teacher": "Estimado/a docente:",
        "about.guardian": "la participación de su hijo o hija en el proyecto de investigación LET'S CARE "
        "en el centro {school}",
        "about.other": "su participación en el proyecto de investigación LET'S CARE en el centro {school}",
        "lead.invitation": "Le invitamos a decidir sobre {about}.",
        "lead.reminder": "Le recordamos que aún no hemos recibido su decisión sobre {about}. "
        "Este nuevo enlace sustituye al anterior.",
        "lead.reconsent": "Algo ha cambiado; por eso le pedimos que decida de nuevo sobre {about}.",
        "how": "Abra este enlace para leer el formulario y decidir sobre cada finalidad:",
        "code": "Si el enlace no funciona, entre en {code_page} y escriba este código: {code}",
        "expires": "El enlace y el código solo sirven una vez, hasta el {date}.",
        "voluntary": "Participar es voluntario. Decir que no no tiene ninguna consecuencia en el centro, "
        "y puede cambiar de opinión cuando quiera.",
        "contact": "¿Tiene preguntas? Pregunte en el centro ({school}) o al equipo de investigación de "
        "LET'S CARE. El centro también tiene formularios en papel.",
        "personal": "Este enlace es personal: por favor, no lo reenvíe.",
        "sign": "El equipo de investigación de LET'S CARE",
    },
    "bg": {
        "subject.invitation": "LET'S CARE: молим за Вашето съгласие",
        "subject.reminder": "Напомняне: LET'S CARE очаква Вашето решение",
        "subject.reconsent": "LET'S CARE: молим Ви да решите отново",
        "greeting.guardian": "Уважаеми родители,",
        "greeting.student": "Здравей,",
        "greeting.teacher": "Здравейте,",
        "about.guardian": "участието на Вашето дете в изследователския проект LET'S CARE в училище {school}",
        "about.other": "Вашето участие в изследователския проект LET'S CARE в училище {school}",
        "lead.invitation": "Каним Ви да решите относно {about}.",
        "lead.reminder": "Напомняме Ви, че все още не сме получили Вашето решение относно {about}. "
        "Тази нова връзка заменя предишната.",
        "lead.reconsent": "Нещо се промени, затова Ви молим да решите отново относно {about}.",
        "how": "Отворете тази връзка, за да прочетете формуляра и да решите за всяка цел:",
        "code": "Ако връзката не работи, отворете {code_page} и въведете този код: {code}",
        "expires": "Връзката и кодът могат да се използват само веднъж, до {date}.",
        "voluntary": "Участието е доброволно. Отказът няма никакви последици в училище и можете да "
        "промените решението си по всяко време.",
        "contact": "Имате въпроси? Попитайте в училището ({school}) или изследователския екип на "
        "LET'S CARE. В училището има и хартиени формуляри.",
        "personal": "Тази връзка е лична: моля, не я препращайте.",
        "sign": "Изследователският екип на LET'S CARE",
    },
    "pl": {
        "subject.invitation": "LET'S CARE: prosimy o Państwa zgodę",
        "subject.reminder": "Przypomnienie: LET'S CARE czeka na Państwa decyzję",
        "subject.reconsent": "LET'S CARE: prosimy o ponowną decyzję",
        "greeting.guardian": "Szanowni Rodzice lub Opiekunowie,",
        "greeting.student": "Cześć,",
        "greeting.teacher": "Szanowni Państwo,",
        "about.guardian": "udziału Państwa dziecka w projekcie badawczym LET'S CARE w szkole {school}",
        "about.other": "Państwa udziału w projekcie badawczym LET'S CARE w szkole {school}",
        "lead.invitation": "Zapraszamy do podjęcia decyzji w sprawie {about}.",
        "lead.reminder": "Przypominamy, że nie otrzymaliśmy jeszcze Państwa decyzji w sprawie {about}. "
        "Ten nowy link zastępuje poprzedni.",
        "lead.reconsent": "Coś się zmieniło, dlatego prosimy o ponowną decyzję w sprawie {about}.",
        "how": "Proszę otworzyć ten link, aby przeczytać formularz i zdecydować o każdym celu:",
        "code": "Jeśli link nie działa, proszę wejść na {code_page} i wpisać ten kod: {code}",
        "expires": "Link i kod można wykorzystać tylko raz, do dnia {date}.",
        "voluntary": "Udział jest dobrowolny. Odmowa nie ma żadnych konsekwencji w szkole, "
        "a decyzję można zmienić w każdej chwili.",
        "contact": "Pytania? Proszę zwrócić się do szkoły ({school}) lub do zespołu badawczego "
        "LET'S CARE. Szkoła ma też formularze papierowe.",
        "personal": "Ten link jest osobisty: prosimy nie przekazywać go dalej.",
        "sign": "Zespół badawczy LET'S CARE",
    },
    "fr": {
        "subject.invitation": "LET'S CARE : nous vous demandons votre consentement",
        "subject.reminder": "Rappel : LET'S CARE attend votre décision",
        "subject.reconsent": "LET'S CARE : merci de décider à nouveau",
        "greeting.guardian": "Madame, Monsieur,",
        "greeting.student": "Bonjour,",
        "greeting.teacher": "Madame, Monsieur,",
        "about.guardian": "la participation de votre enfant au projet de recherche LET'S CARE "
        "à l'école {school}",
        "about.other": "votre participation au projet de recherche LET'S CARE à l'école {school}",
        "lead.invitation": "Nous vous invitons à prendre une décision concernant {about}.",
        "lead.reminder": "Petit rappel : nous n'avons pas encore reçu votre décision concernant {about}. "
        "Ce nouveau lien remplace le précédent.",
        "lead.reconsent": "Quelque chose a changé : nous vous demandons donc de décider à nouveau "
        "concernant {about}.",
        "how": "Ouvrez ce lien pour lire le formulaire et décider pour chaque finalité :",
        "code": "Si le lien ne fonctionne pas, allez sur {code_page} et tapez ce code : {code}",
        "expires": "Le lien et le code ne servent qu'une fois, jusqu'au {date}.",
        "voluntary": "La participation est volontaire. Dire non n'a aucune conséquence à l'école, "
        "et vous pouvez changer d'avis à tout moment.",
        "contact": "Des questions ? Adressez-vous à l'école ({school}) ou à l'équipe de recherche "
        "LET'S CARE. L'école a aussi des formulaires papier.",
        "personal": "Ce lien est personnel : merci de ne pas le transférer.",
        "sign": "L'équipe de recherche LET'S CARE",
    },
    "nl": {
        "subject.invitation": "LET'S CARE: wij vragen uw toestemming",
        "subject.reminder": "Herinnering: LET'S CARE wacht op uw beslissing",
        "subject.reconsent": "LET'S CARE: wilt u opnieuw beslissen?",
        "greeting.guardian": "Beste ouder of voogd,",
        "greeting.student": "Hallo,",
        "greeting.teacher": "Beste leerkracht,",
        "about.guardian": "de deelname van uw kind aan het onderzoeksproject LET'S CARE op school {school}",
        "about.other": "uw deelname aan het onderzoeksproject LET'S CARE op school {school}",
        "lead.invitation": "Wij vragen u te beslissen over {about}.",
        "lead.reminder": "Een herinnering: wij hebben uw beslissing over {about} nog niet ontvangen. "
        "Deze nieuwe link vervangt de vorige.",
        "lead.reconsent": "Er is iets veranderd. Daarom vragen wij u opnieuw te beslissen over {about}.",
        "how": "Open deze link om het formulier te lezen en per doel te beslissen:",
        "code": "Werkt de link niet? Ga naar {code_page} en typ deze code: {code}",
        "expires": "De link en de code werken één keer, tot {date}.",
        "voluntary": "Meedoen is vrijwillig. Nee zeggen heeft geen gevolgen op school, "
        "en u kunt altijd van gedachten veranderen.",
        "contact": "Vragen? Vraag het aan de school ({school}) of aan het onderzoeksteam van LET'S CARE. "
        "De school heeft ook papieren formulieren.",
        "personal": "Deze link is persoonlijk: stuur hem alstublieft niet door.",
        "sign": "Het onderzoeksteam van LET'S CARE",
    },
}
LANGUAGES: Final = tuple(TEXTS)


@dataclass(frozen=True)
class ComposedEmail:
    """Subject and plain-text body of one invitation email, and the language they are written in."""

    language: str
    subject: str
    text: str


def email_language(language: str) -> str:
    """The language an email is written in: the invitee's when we have texts for it, else English."""
    primary = language.split("-", maxsplit=1)[0].lower()
    return primary if primary in TEXTS else "en"


def compose(
    *,
    language: str,
    kind: InviteeKind,
    reason: InvitationReason,
    school: str,
    link: str,
    code: str,
    code_page: str,
    expires_on: date,
) -> ComposedEmail:
    """The invitation email for one person, in their language."""
    lang = email_language(language)
    say = TEXTS[lang]
    about = say["about.guardian" if kind is InviteeKind.guardian else "about.other"].format(school=school)
    when = format_date(expires_on, format="long", locale=_DATE_LOCALES[lang])
    paragraphs = [
        say[f"greeting.{kind.value}"],
        say[f"lead.{reason.value}"].format(about=about),
        f"{say['how']}\n{link}",
        say["code"].format(code_page=code_page, code=code),
        say["expires"].format(date=when),
        say["voluntary"],
        say["contact"].format(school=school),
        say["personal"],
        say["sign"],
    ]
    return ComposedEmail(lang, say[f"subject.{reason.value}"], "\n\n".join(paragraphs) + "\n")
