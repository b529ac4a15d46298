"""The words of the invitation letters, in the six languages of the project.

Plain language on purpose: short sentences, one idea each, no legal terms, because many readers
read the school's language as a second language. Guardians and teachers are addressed formally,
students informally, as schools in each country do.

Placeholders: ``{school}``, ``{name}`` and ``{date}`` (the expiry date, already written in the
letter's language).
"""

from __future__ import annotations

from typing import Final, Literal

Kind = Literal["guardian", "student", "teacher"]

KINDS: Final[frozenset[str]] = frozenset({"guardian", "student", "teacher"})
DEFAULT_LANGUAGE: Final = "en"

# Keys every letter needs; each (language, kind) table below has all of them (a test checks it).
KEYS: Final = (
    "title",
    "greeting",
    "greeting_named",
    "children_label",
    "intro",
    "ask",
    "how",
    "scan",
    "visit",
    "type_code",
    "deadline",
    "no_consequences",
    "help",
    "personal",
    "closing",
    "signature",
)

_EN_FORMAL = {
    "children_label": "This letter is about:",
    "how": "How to answer",
    "scan": "Scan the QR code with your phone camera.",
    "visit": "Or go to this page:",
    "type_code": "and type this code:",
    "deadline": "Please answer by {date}.",
    "personal": "This code is personal. Do not share it with anyone.",
    "closing": "Thank you.",
    "signature": "The LET'S CARE research team and {school}",
    "greeting_named": "Dear {name},",
}

_ES_FORMAL = {
    "children_label": "Esta carta se refiere a:",
    "how": "Cómo responder",
    "scan": "Escanee el código QR con la cámara de su móvil.",
    "visit": "O entre en esta página:",
    "type_code": "y escriba este código:",
    "deadline": "Por favor, responda a más tardar el {date}.",
    "personal": "Este código es personal. No lo comparta con nadie.",
    "closing": "Gracias.",
    "signature": "El equipo de investigación LET'S CARE y {school}",
    "greeting_named": "Estimado/a {name}:",
}

_BG_FORMAL = {
    "children_label": "Писмото се отнася за:",
    "how": "Как да отговорите",
    "scan": "Сканирайте QR кода с камерата на телефона си.",
    "visit": "Или отворете тази страница:",
    "type_code": "и въведете този код:",
    "deadline": "Моля, отговорете до {date}.",
    "personal": "Този код е личен. Не го давайте на никого.",
    "closing": "Благодарим Ви!",
    "signature": "Изследователският екип на LET'S CARE и {school}",
    "greeting_named": "Здравейте, {name},",
}

_PL_FORMAL = {
    "children_label": "Ten list dotyczy:",
    "how": "Jak odpowiedzieć",
    "scan": "Proszę zeskanować kod QR aparatem w telefonie.",
    "visit": "Albo proszę wejść na stronę:",
    "type_code": "i wpisać ten kod:",
    "deadline": "Prosimy o odpowiedź do {date}.",
    "personal": "Ten kod jest osobisty. Prosimy nikomu go nie udostępniać.",
    "closing": "Dziękujemy.",
    "signature": "Zespół badawczy LET'S CARE i {school}",
    "greeting_named": "Dzień dobry, {name},",
}

# French typography puts a no-break space before ":", "?" and "!" so they never start a line.
_FR_FORMAL = {
    "children_label": "Cette lettre concerne\u00a0:",
    "how": "Comment répondre",
    "scan": "Scannez le code QR avec l'appareil photo de votre téléphone.",
    "visit": "Ou allez sur cette page\u00a0:",
    "type_code": "et tapez ce code\u00a0:",
    "deadline": "Merci de répondre au plus tard le {date}.",
    "personal": "Ce code est personnel. Ne le communiquez à personne.",
    "closing": "Merci.",
    "signature": "L'équipe de recherche LET'S CARE et {school}",
    "greeting_named": "Bonjour {name},",
}

_NL_FORMAL = {
    "children_label": "Deze brief gaat over:",
    "how": "Zo antwoordt u",
    "scan": "Scan de QR-code met de camera van uw telefoon.",
    "visit": "Of ga naar deze pagina:",
    "type_code": "en typ deze code:",
    "deadline": "Antwoord alstublieft uiterlijk op {date}.",
    "personal": "Deze code is persoonlijk. Geef hem aan niemand anders.",
    "closing": "Dank u wel.",
    "signature": "Het onderzoeksteam van LET'S CARE en {school}",
    "greeting_named": "Beste {name},",
}

TEXTS: Final[dict[str, dict[str, dict[str, str]]]] = {
    "en": {
        "guardian": _EN_FORMAL
        | {
            "title": "Your decision for the LET'S CARE research project",
            "greeting": "Dear parent or guardian,",
            "intro": (
                "{school} is taking part in LET'S CARE, a European research project on how schools can "
                "help every child stay in education. The research team and the school are writing to "
                "you together."
            ),
            "ask": (
                "Please read the consent form and decide, for each purpose, whether your child can take "
                "part. Depending on their age, your child may also be asked."
            ),
            "no_consequences": (
                "Saying no has no consequences for your child at school. You can change your decision at "
                "any time."
            ),
            "help": "The school can help you. If you prefer a paper form, ask the school for one.",
        },
        "student": _EN_FORMAL
        | {
            "title": "Do you want to take part in LET'S CARE?",
            "greeting": "Dear student,",
            "intro": (
                "Your school, {school}, is taking part in LET'S CARE, a research project about how schools "
                "can help every pupil. The research team and your school are writing to you together."
            ),
            "ask": (
                "Please read the information and decide, for each part of the study, whether you want to "
                "take part. Your parents or guardians may also be asked."
            ),
            "no_consequences": (
                "It is fine to say no: nothing changes for you at school. You can change your mind at any "
                "time."
            ),
            "help": (
                "If you have a question, ask your teacher or the school office. You can also ask for a "
                "paper form."
            ),
            "personal": "This code is only for you. Do not share it with anyone.",
        },
        "teacher": _EN_FORMAL
        | {
            "title": "Your decision for the LET'S CARE research project",
            "greeting": "Dear teacher,",
            "intro": (
                "{school} is taking part in LET'S CARE, a European research project on early school "
                "leaving. The research team and the school invite you to take part."
            ),
            "ask": "Please read the consent form and decide, for each purpose, whether you take part.",
            "no_consequences": (
                "Saying no has no consequences for your work at the school. You can change your decision "
                "at any time."
            ),
            "help": "If you prefer a paper form, ask the school office for one.",
        },
    },
    "es": {
        "guardian": _ES_FORMAL
        | {
            "title": "Su decisión sobre el proyecto de investigación LET'S CARE",
            "greeting": "Estimada familia:",
            "intro": (
                "{school} participa en LET'S CARE, un proyecto europeo de investigación sobre cómo los "
                "centros educativos pueden ayudar a que todos los niños y niñas sigan estudiando. El "
                "equipo de investigación y el centro le escriben juntos."
            ),
            "ask": (
                "Le pedimos que lea el formulario de consentimiento y decida, para cada finalidad, si su "
                "hijo o hija puede participar. Según su edad, también se le puede preguntar a su hijo o "
                "hija."
            ),
            "no_consequences": (
                "Decir que no no tiene ninguna consecuencia para su hijo o hija en el centro. Puede "
                "cambiar su decisión en cualquier momento."
            ),
            "help": "El centro puede ayudarle. Si prefiere un formulario en papel, pídalo en el centro.",
        },
        "student": _ES_FORMAL
        | {
            "title": "¿Quieres participar en LET'S CARE?",
            "greeting": "Hola:",
            "greeting_named": "Hola, {name}:",
            "intro": (
                "Tu centro, {school}, participa en LET'S CARE, un proyecto de investigación sobre cómo los "
                "centros pueden ayudar a todo el alumnado. El equipo de investigación y tu centro te "
                "escriben juntos."
            ),
            "ask": (
                "Lee la información y decide, para cada parte del estudio, si quieres participar. "
                "También se puede preguntar a tu familia."
            ),
            "scan": "Escanea el código QR con la cámara del móvil.",
            "visit": "O entra en esta página:",
            "type_code": "y escribe este código:",
            "deadline": "Por favor, responde a más tardar el {date}.",
            "no_consequences": (
                "Puedes decir que no: no cambia nada para ti en el centro. Puedes cambiar de opinión "
                "cuando quieras."
            ),
            "help": (
                "Si tienes preguntas, habla con tu profesor o profesora o con la secretaría del centro. "
                "También puedes pedir un formulario en papel."
            ),
            "personal": "Este código es solo tuyo. No lo compartas con nadie.",
        },
        "teacher": _ES_FORMAL
        | {
            "title": "Su decisión sobre el proyecto de investigación LET'S CARE",
            "greeting": "Estimado/a docente:",
            "intro": (
                "{school} participa en LET'S CARE, un proyecto europeo de investigación sobre el abandono "
                "escolar temprano. El equipo de investigación y el centro le invitan a participar."
            ),
            "ask": (
                "Le pedimos que lea el formulario de consentimiento y decida, para cada finalidad, si "
                "participa."
            ),
            "no_consequences": (
                "Decir que no no tiene ninguna consecuencia para su trabajo en el centro. Puede cambiar "
                "su decisión en cualquier momento."
            ),
            "help": "Si prefiere un formulario en papel, pídalo en la secretaría del centro.",
        },
    },
    "bg": {
        "guardian": _BG_FORMAL
        | {
            "title": "Вашето решение за изследователския проект LET'S CARE",
            "greeting": "Уважаеми родители и настойници,",
            "intro": (
                "{school} участва в LET'S CARE – европейски изследователски проект за това как "
                "училището може да помогне на всяко дете да продължи образованието си. Пишем Ви "
                "заедно – изследователският екип и училището."
            ),
            "ask": (
                "Моля, прочетете формуляра за съгласие и решете за всяка цел дали детето Ви може да "
                "участва. В зависимост от възрастта му детето също може да бъде попитано."
            ),
            "no_consequences": (
                "Ако откажете, това няма никакви последици за детето Ви в училище. Можете да промените "
                "решението си по всяко време."
            ),
            "help": (
                "Училището може да Ви помогне. Ако предпочитате хартиен формуляр, поискайте го от училището."
            ),
        },
        "student": _BG_FORMAL
        | {
            "title": "Искаш ли да участваш в LET'S CARE?",
            "greeting": "Здравей,",
            "greeting_named": "Здравей, {name},",
            "intro": (
                "Твоето училище, {school}, участва в LET'S CARE – изследователски проект за това как "
                "училището може да помогне на всеки ученик. Пишем ти заедно – изследователският екип и "
                "училището."
            ),
            "ask": (
                "Прочети информацията и реши за всяка част от изследването дали искаш да участваш. "
                "Може да попитат и твоите родители или настойници."
            ),
            "how": "Как да отговориш",
            "scan": "Сканирай QR кода с камерата на телефона си.",
            "visit": "Или отвори тази страница:",
            "type_code": "и въведи този код:",
            "deadline": "Моля, отговори до {date}.",
            "no_consequences": (
                "Можеш да откажеш: в училище нищо няма да се промени за теб. Можеш да промениш "
                "решението си по всяко време."
            ),
            "help": (
                "Ако имаш въпроси, попитай учителя си или канцеларията на училището. Можеш да поискаш и "
                "хартиен формуляр."
            ),
            "personal": "Този код е само за теб. Не го давай на никого.",
            "closing": "Благодарим ти!",
        },
        "teacher": _BG_FORMAL
        | {
            "title": "Вашето решение за изследователския проект LET'S CARE",
            "greeting": "Уважаеми колеги,",
            "intro": (
                "{school} участва в LET'S CARE – европейски изследователски проект за преждевременното "
                "напускане на училище. Изследователският екип и училището Ви канят да участвате."
            ),
            "ask": "Моля, прочетете формуляра за съгласие и решете за всяка цел дали участвате.",
            "no_consequences": (
                "Ако откажете, това няма никакви последици за работата Ви в училището. Можете да "
                "промените решението си по всяко време."
            ),
            "help": "Ако предпочитате хартиен формуляр, поискайте го от канцеларията на училището.",
        },
    },
    "pl": {
        "guardian": _PL_FORMAL
        | {
            "title": "Decyzja w sprawie projektu badawczego LET'S CARE",
            "greeting": "Szanowni Państwo,",
            "intro": (
                "{school} bierze udział w LET'S CARE – europejskim projekcie badawczym o tym, jak szkoła "
                "może pomóc każdemu dziecku kontynuować naukę. Piszą do Państwa wspólnie zespół badawczy "
                "i szkoła."
            ),
            "ask": (
                "Prosimy o przeczytanie formularza zgody i podjęcie decyzji, osobno dla każdego celu, czy "
                "dziecko może wziąć udział w badaniu. W zależności od wieku dziecko również może zostać "
                "zapytane o zdanie."
            ),
            "no_consequences": (
                "Odmowa nie ma żadnych konsekwencji dla dziecka w szkole. Decyzję można zmienić w każdej "
                "chwili."
            ),
            "help": (
                "Szkoła chętnie pomoże. Jeśli wolą Państwo formularz papierowy, prosimy zgłosić się do "
                "szkoły."
            ),
        },
        "student": _PL_FORMAL
        | {
            "title": "Czy chcesz wziąć udział w LET'S CARE?",
            "greeting": "Cześć,",
            "greeting_named": "Cześć, {name},",
            "intro": (
                "Twoja szkoła, {school}, bierze udział w LET'S CARE – projekcie badawczym o tym, jak "
                "szkoła może pomóc każdemu uczniowi. Piszą do Ciebie wspólnie zespół badawczy i Twoja "
                "szkoła."
            ),
            "ask": (
                "Przeczytaj informacje i zdecyduj, osobno dla każdej części badania, czy chcesz wziąć "
                "udział. Twoi rodzice lub opiekunowie też mogą zostać zapytani."
            ),
            "scan": "Zeskanuj kod QR aparatem w telefonie.",
            "visit": "Albo wejdź na stronę:",
            "type_code": "i wpisz ten kod:",
            "deadline": "Odpowiedz do {date}.",
            "no_consequences": (
                "Możesz odmówić: w szkole nic się dla Ciebie nie zmieni. Zdanie możesz zmienić w każdej "
                "chwili."
            ),
            "help": (
                "Jeśli masz pytania, zapytaj nauczyciela lub w sekretariacie szkoły. Możesz też poprosić "
                "o formularz papierowy."
            ),
            "personal": "Ten kod jest tylko dla Ciebie. Nikomu go nie pokazuj.",
            "closing": "Dziękujemy!",
        },
        "teacher": _PL_FORMAL
        | {
            "title": "Decyzja w sprawie projektu badawczego LET'S CARE",
            "greeting": "Szanowni Państwo,",
            "intro": (
                "{school} bierze udział w LET'S CARE – europejskim projekcie badawczym dotyczącym "
                "przedwczesnego kończenia nauki. Zespół badawczy i szkoła zapraszają do udziału."
            ),
            "ask": (
                "Prosimy o przeczytanie formularza zgody i podjęcie decyzji, osobno dla każdego celu, o "
                "udziale w badaniu."
            ),
            "no_consequences": (
                "Odmowa nie ma żadnych konsekwencji dla pracy w szkole. Decyzję można zmienić w każdej "
                "chwili."
            ),
            "help": "Formularz papierowy można otrzymać w sekretariacie szkoły.",
        },
    },
    "fr": {
        "guardian": _FR_FORMAL
        | {
            "title": "Votre décision pour le projet de recherche LET'S CARE",
            "greeting": "Madame, Monsieur,",
            "intro": (
                "{school} participe à LET'S CARE, un projet de recherche européen sur la manière dont "
                "l'école peut aider chaque enfant à poursuivre sa scolarité. L'équipe de recherche et "
                "l'école vous écrivent ensemble."
            ),
            "ask": (
                "Nous vous demandons de lire le formulaire de consentement et de décider, pour chaque "
                "finalité, si votre enfant peut participer. Selon son âge, votre enfant pourra aussi être "
                "consulté."
            ),
            "no_consequences": (
                "Dire non n'a aucune conséquence pour votre enfant à l'école. Vous pouvez changer d'avis à "
                "tout moment."
            ),
            "help": (
                "L'école peut vous aider. Si vous préférez un formulaire papier, demandez-le à l'école."
            ),
        },
        "student": _FR_FORMAL
        | {
            "title": "Veux-tu participer à LET'S CARE\u00a0?",
            "greeting": "Bonjour,",
            "intro": (
                "Ton école, {school}, participe à LET'S CARE, un projet de recherche sur la manière dont "
                "l'école peut aider chaque élève. L'équipe de recherche et ton école t'écrivent ensemble."
            ),
            "ask": (
                "Lis les informations et décide, pour chaque partie de l'étude, si tu veux participer. "
                "Tes parents ou responsables pourront aussi être consultés."
            ),
            "scan": "Scanne le code QR avec l'appareil photo de ton téléphone.",
            "visit": "Ou va sur cette page\u00a0:",
            "type_code": "et tape ce code\u00a0:",
            "deadline": "Réponds au plus tard le {date}.",
            "no_consequences": (
                "Tu peux dire non\u00a0: cela ne change rien pour toi à l'école. Tu peux changer d'avis à "
                "tout moment."
            ),
            "help": (
                "Si tu as une question, demande à ton enseignant ou au secrétariat de l'école. Tu peux "
                "aussi demander un formulaire papier."
            ),
            "personal": "Ce code est personnel. Ne le donne à personne.",
        },
        "teacher": _FR_FORMAL
        | {
            "title": "Votre décision pour le projet de recherche LET'S CARE",
            "greeting": "Madame, Monsieur,",
            "intro": (
                "{school} participe à LET'S CARE, un projet de recherche européen sur le décrochage "
                "scolaire. L'équipe de recherche et l'école vous invitent à y participer."
            ),
            "ask": (
                "Nous vous demandons de lire le formulaire de consentement et de décider, pour chaque "
                "finalité, si vous participez."
            ),
            "no_consequences": (
                "Dire non n'a aucune conséquence pour votre travail à l'école. Vous pouvez changer d'avis "
                "à tout moment."
            ),
            "help": "Si vous préférez un formulaire papier, demandez-le au secrétariat de l'école.",
        },
    },
    "nl": {
        "guardian": _NL_FORMAL
        | {
            "title": "Uw keuze voor het onderzoek LET'S CARE",
            "greeting": "Beste ouder of verzorger,",
            "intro": (
                "{school} doet mee aan LET'S CARE, een Europees onderzoek naar hoe scholen elk kind kunnen "
                "helpen om op school te blijven. Het onderzoeksteam en de school schrijven u samen."
            ),
            "ask": (
                "Wij vragen u het toestemmingsformulier te lezen en per doel te kiezen of uw kind mag "
                "meedoen. Afhankelijk van de leeftijd wordt uw kind misschien ook zelf gevraagd."
            ),
            "no_consequences": (
                "Nee zeggen heeft geen gevolgen voor uw kind op school. U kunt uw keuze altijd veranderen."
            ),
            "help": (
                "De school helpt u graag. Wilt u liever een papieren formulier? Vraag het aan de school."
            ),
        },
        "student": _NL_FORMAL
        | {
            "title": "Doe je mee met LET'S CARE?",
            "greeting": "Beste leerling,",
            "intro": (
                "Jouw school, {school}, doet mee aan LET'S CARE, een onderzoek naar hoe scholen elke "
                "leerling kunnen helpen. Het onderzoeksteam en je school schrijven je samen."
            ),
            "ask": (
                "Lees de informatie en kies per onderdeel van het onderzoek of je wilt meedoen. Misschien "
                "wordt het ook aan je ouders of verzorgers gevraagd."
            ),
            "how": "Zo antwoord je",
            "scan": "Scan de QR-code met de camera van je telefoon.",
            "deadline": "Antwoord uiterlijk op {date}.",
            "no_consequences": (
                "Nee zeggen mag: er verandert niets voor jou op school. Je kunt altijd van gedachten "
                "veranderen."
            ),
            "help": (
                "Heb je een vraag? Vraag het je leraar of de administratie van de school. Je kunt ook een "
                "papieren formulier vragen."
            ),
            "personal": "Deze code is alleen voor jou. Geef hem aan niemand anders.",
            "closing": "Dank je wel.",
        },
        "teacher": _NL_FORMAL
        | {
            "title": "Uw keuze voor het onderzoek LET'S CARE",
            "greeting": "Beste collega,",
            "intro": (
                "{school} doet mee aan LET'S CARE, een Europees onderzoek naar voortijdig schoolverlaten. "
                "Het onderzoeksteam en de school nodigen u uit om mee te doen."
            ),
            "ask": "Wij vragen u het toestemmingsformulier te lezen en per doel te kiezen of u meedoet.",
            "no_consequences": (
                "Nee zeggen heeft geen gevolgen voor uw werk op school. U kunt uw keuze altijd veranderen."
            ),
            "help": "Wilt u liever een papieren formulier? Vraag het aan de administratie van de school.",
        },
    },
}
"""``TEXTS[language][kind][key]``: every supported language has every kind and every key."""

LANGUAGES: Final[frozenset[str]] = frozenset(TEXTS)


def letter_language(language: str) -> str:
    """The language a letter is written in: ``bg-BG`` or ``BG`` give ``bg``; unsupported ones give English."""
    primary = language.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in TEXTS else DEFAULT_LANGUAGE
