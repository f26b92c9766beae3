"""The profile catalogue and the parser of `&` codes in subjects (calendar-rules.md §1)."""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from sync.rules.model import Profile

# The seeded catalogue, used when the engine runs without the AbsenceProfile table.
DEFAULT_PROFILES: tuple[Profile, ...] = (
    Profile("Ikf", "Ikke Forstyrr", "Ikke Forstyrr", "Ikke Forstyrr"),
    Profile("Gåt", "Gått for dagen", "Gått for dagen", "Fri"),
    Profile("Eks", "Ekstern avtale", "Ekstern avtale", "Eksternt Møte"),
    Profile("Møt", "Møte", "Møte", "Møte"),
    Profile("For", "Forretningsreise", "Forretningsreise", "Jobbreise"),
    Profile("Ute", "Ute til lunch", "Ute til lunch", "Lunch"),
    Profile("Ferie", "Ferie", "Ferie", "Ferie"),
    Profile("Ikt", "Ikke tilgjengelig", "Ikke tilgjengelig", "Opptatt"),
    Profile("Sna", "Snart tilbake", "Snart tilbake", "Pause"),
    Profile("Syk", "Syk", "Syk", "Syk"),
    Profile("Per", "Permisjon", "Permisjon", "Permisjon"),
)


@dataclass(frozen=True)
class SubjectCode:
    """What the codes in one subject ask for.

    `explicit`: the subject has at least one code (a profile, a modifier or both).
    `profile`: the first code's profile that names one. `divert`: the last `+` (True) or `-` (False).
    """

    explicit: bool = False
    profile: Profile | None = None
    divert: bool | None = None


NO_CODE = SubjectCode()


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _fold(name: str) -> str:
    """A name as compared: NFC, case-folded, runs of whitespace as one space."""
    return " ".join(_normalize(name).casefold().split())


@dataclass(frozen=True)
class Catalogue:
    profiles: tuple[Profile, ...]

    @classmethod
    def of(cls, profiles: Iterable[Profile]) -> "Catalogue":
        return cls(tuple(profiles))

    @cached_property
    def _by_name(self) -> dict[str, Profile]:
        names: dict[str, Profile] = {}
        for profile in self.profiles:
            for name in (profile.full_name, profile.profile, profile.short_code):
                names.setdefault(_fold(name), profile)
        return names

    def find(self, name: str) -> Profile | None:
        """The profile with this full name, shown name or short code (any case, any spacing)."""
        return self._by_name.get(_fold(name))

    @cached_property
    def _pattern(self) -> tuple[re.Pattern[str], dict[str, Profile]]:
        tokens: dict[str, tuple[str, Profile]] = {}
        for profile in self.profiles:
            for token in (profile.short_code, profile.full_name):
                tokens.setdefault(_fold(token), (_normalize(token).strip(), profile))
        # Longest alternative first, so `&Møte` is the full name Møte rather than `Møt` + "e".
        ordered = sorted(tokens.values(), key=lambda item: len(_fold(item[0])), reverse=True)
        groups: dict[str, Profile] = {}
        alternatives = []
        for index, (token, profile) in enumerate(ordered):
            name = f"p{index}"
            groups[name] = profile
            words = r"\s+".join(re.escape(word) for word in token.split())
            alternatives.append(f"(?P<{name}>{words})")
        token_part = f"(?:(?:{'|'.join(alternatives)})(?![^\\W_]))?" if alternatives else ""
        # `&` at the start or after a character that is not a letter or digit; then an optional
        # modifier; then an optional token that is not followed by a letter or digit.
        pattern = re.compile(rf"(?<![^\W_])&([+-])?{token_part}", re.IGNORECASE)
        return pattern, groups

    def parse(self, subject: str) -> SubjectCode:
        """The codes in a subject (calendar-rules.md §1)."""
        if "&" not in subject:
            return NO_CODE
        pattern, groups = self._pattern
        explicit = False
        profile: Profile | None = None
        divert: bool | None = None
        for match in pattern.finditer(_normalize(subject)):
            modifier = match.group(1)
            token = match.lastgroup
            if modifier is None and token is None:
                continue  # `&` alone or `&xyz`: no code
            explicit = True
            if token is not None and profile is None:
                profile = groups[token]
            if modifier is not None:
                divert = modifier == "+"
        return SubjectCode(explicit=explicit, profile=profile, divert=divert) if explicit else NO_CODE


DEFAULT_CATALOGUE = Catalogue(DEFAULT_PROFILES)
