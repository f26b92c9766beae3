"""The `&` code parser (calendar-rules.md §1) on real-world subjects."""

import unicodedata

import pytest

from sync.rules import DEFAULT_CATALOGUE

DECOMPOSED_GAT = unicodedata.normalize("NFD", "&Gåt")  # 'a' + combining ring above
assert DECOMPOSED_GAT != "&Gåt"

# subject, profile shown (None: no profile code), divert (None: no modifier), explicit
CASES = [
    # short codes and full names, as on the product page
    ("&For", "Forretningsreise", None, True),
    ("Salgsmøte i Tyskland &For", "Forretningsreise", None, True),
    ("Salgsmøte i Tyskland &Forretningsreise", "Forretningsreise", None, True),
    ("&Ikf", "Ikke Forstyrr", None, True),
    ("&Ikke Forstyrr", "Ikke Forstyrr", None, True),
    ("&Gåt", "Gått for dagen", None, True),
    ("Tannlege &Gått for dagen", "Gått for dagen", None, True),
    ("&Eks kunde", "Ekstern avtale", None, True),
    ("&Ekstern avtale hos Telenor", "Ekstern avtale", None, True),
    ("&Møt", "Møte", None, True),
    ("&Møte", "Møte", None, True),
    ("&Ute", "Ute til lunch", None, True),
    ("&Ute til lunch med Per", "Ute til lunch", None, True),
    ("&Ferie", "Ferie", None, True),
    ("&Ikt", "Ikke tilgjengelig", None, True),
    ("&Ikke tilgjengelig", "Ikke tilgjengelig", None, True),
    ("&Sna", "Snart tilbake", None, True),
    ("&Snart tilbake", "Snart tilbake", None, True),
    ("&Syk", "Syk", None, True),
    ("&Per", "Permisjon", None, True),
    ("&Permisjon", "Permisjon", None, True),
    # not codes: & inside words, unknown tokens, a token followed by a letter
    ("R&D", None, None, False),
    ("AT&T", None, None, False),
    ("Q&A med R&D", None, None, False),
    ("R&Ferie", None, None, False),
    ("9&For", None, None, False),
    ("&Møter", None, None, False),
    ("&xyz", None, None, False),
    ("&", None, None, False),
    ("Middag & vin", None, None, False),
    ("&Feriedager", None, None, False),
    ("&Forretningsreiser", None, None, False),
    ("Ingen kode her", None, None, False),
    ("", None, None, False),
    # case, spacing and Unicode
    ("&for", "Forretningsreise", None, True),
    ("&FERIE", "Ferie", None, True),
    ("&mØt", "Møte", None, True),
    ("&ikke   TILGJENGELIG", "Ikke tilgjengelig", None, True),
    ("&Ikke\ttilgjengelig", "Ikke tilgjengelig", None, True),
    ("&Ute  til   lunch", "Ute til lunch", None, True),
    (DECOMPOSED_GAT, "Gått for dagen", None, True),
    ("Ferien starter (&Ferie)", "Ferie", None, True),
    ("Reise:&For", "Forretningsreise", None, True),
    ("&For.", "Forretningsreise", None, True),
    ("&Møt,", "Møte", None, True),
    ("&Ikke", None, None, False),  # a prefix of a full name is not a code
    # modifiers alone and combined
    ("&+", None, True, True),
    ("&-", None, False, True),
    ("Viktig &+", None, True, True),
    ("&-Ferie", "Ferie", False, True),
    ("&+Ferie", "Ferie", True, True),
    ("&+ferie", "Ferie", True, True),
    ("&+xyz", None, True, True),
    ("&-Møter", None, False, True),  # modifier, then ordinary text
    ("&- Ferie", None, False, True),  # the token must follow the modifier directly
    # several codes: the first profile decides, the last modifier decides
    ("&Ferie &Syk", "Ferie", None, True),
    ("&Syk &Ferie", "Syk", None, True),
    ("&+ &-", None, False, True),
    ("&- &+", None, True, True),
    ("&-Ferie &+", "Ferie", True, True),
    ("&xyz &For", "Forretningsreise", None, True),
    ("R&D &Eks &-", "Ekstern avtale", False, True),
    ("&+For og &-Syk", "Forretningsreise", False, True),
    ("&&For", "Forretningsreise", None, True),
]


@pytest.mark.parametrize(("subject", "profile", "divert", "explicit"), CASES)
def test_subject_codes(subject, profile, divert, explicit):
    code = DEFAULT_CATALOGUE.parse(subject)
    assert (code.profile.profile if code.profile else None, code.divert, code.explicit) == (profile, divert, explicit)


def test_there_are_at_least_forty_subjects():
    assert len(CASES) >= 40


def test_the_catalogue_is_data_not_code():
    from sync.rules import Catalogue, Profile

    catalogue = Catalogue.of([Profile("Kurs", "På kurs", "På kurs", "Kurs")])
    assert catalogue.parse("Opplæring &Kurs").profile.mbn_reason == "Kurs"
    assert catalogue.parse("&På   kurs").profile.profile == "På kurs"
    assert catalogue.parse("&For").profile is None
