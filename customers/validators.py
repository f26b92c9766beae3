"""Validation and normalisation of the identifiers customers give us, with errors people can act on."""

import functools
import itertools
import re
import zoneinfo
from collections.abc import Iterator

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from stdnum import exceptions as stdnum_errors
from stdnum.no import orgnr

# Most specific first: stdnum's InvalidLength is a kind of InvalidFormat.
_ORGNR_PROBLEMS = {
    stdnum_errors.InvalidChecksum: _("the check digit does not match; check for a typing error"),
    stdnum_errors.InvalidLength: _("it must have exactly 9 digits"),
    stdnum_errors.InvalidFormat: _("it may only contain digits (spaces are allowed)"),
}


def compact_org_number(value: str) -> str:
    """'923 609 016' → '923609016' (no validation)."""
    return orgnr.compact(value or "")


def org_numbers_from(base: int) -> Iterator[str]:
    """Valid organisation numbers (mod 11) from the eight-digit `base` upwards: for demo and test data."""
    for stem in itertools.count(base):
        for digit in "0123456789":
            if orgnr.is_valid(f"{stem}{digit}"):
                yield f"{stem}{digit}"
                break


def validate_org_number(value: str) -> None:
    """A Norwegian organisation number (Enhetsregisteret), checked with python-stdnum's no.orgnr."""
    try:
        orgnr.validate(value)
    except stdnum_errors.ValidationError as error:
        problem = next(
            (text for kind, text in _ORGNR_PROBLEMS.items() if isinstance(error, kind)),
            _("it is not a valid number"),
        )
        raise ValidationError(
            _("“%(value)s” is not a valid organisation number: %(problem)s."),
            params={"value": value, "problem": problem},
            code="invalid_org_number",
        ) from error


_PARTICIPANT = re.compile(r"^(?P<scheme>\d{4}):(?P<identifier>[A-Za-z0-9.\-]{1,50})$")


def validate_peppol_participant(value: str) -> None:
    """A Peppol participant id 'scheme:identifier'; Norwegian organisations use 0192:<orgnr>."""
    match = _PARTICIPANT.match(value)
    if not match:
        raise ValidationError(
            _(
                "“%(value)s” is not a Peppol participant id. "
                "Write it as 0192:<organisation number>, e.g. 0192:923609016."
            ),
            params={"value": value},
            code="invalid_participant",
        )
    if match["scheme"] == "0192":
        try:
            validate_org_number(match["identifier"])
        except ValidationError as error:
            raise ValidationError(
                _("“%(value)s”: the part after 0192: must be a valid organisation number."),
                params={"value": value},
                code="invalid_participant",
            ) from error


_NORWEGIAN_MOBILE = re.compile(r"^[49]\d{7}$")
_NUMBER_PUNCTUATION = re.compile(r"[\s\-().]")


def parse_msisdn(value: str | None) -> str | None:
    """A phone number as +<country><number>, the one form we store and match on; None when it is not one.

    '912 34 567', '+47 912 34 567', '004791234567' and '4791234567' all become '+4791234567' (eight digits
    are Norwegian; ten starting with 47 are Norwegian with the country code but without + or 00). Shared by
    the MSISDN validator and MBN subscriber matching (`sync.mbn`), so what a person types and what MBN
    lists compare alike.
    """
    if not value:
        return None
    text = _NUMBER_PUNCTUATION.sub("", value)
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+"):
        digits = text[1:]
        return text if digits.isdigit() and not digits.startswith("0") and 8 <= len(digits) <= 15 else None
    if not text.isdigit():
        return None
    if len(text) == 8:
        return "+47" + text
    if len(text) == 10 and text.startswith("47"):
        return "+" + text
    return None


def normalize_msisdn(value: str) -> str:
    """The number as `parse_msisdn` writes it; a text that is not a number comes back as typed (the
    validator then says what is wrong with it)."""
    return parse_msisdn(value) or (value or "").strip()


def validate_msisdn(value: str) -> None:
    """A mobile number: any country in international form, or a Norwegian mobile (8 digits from 4 or 9)."""
    normalized = parse_msisdn(value)
    if normalized is None or (normalized.startswith("+47") and not _NORWEGIAN_MOBILE.match(normalized[3:])):
        raise ValidationError(
            _(
                "“%(value)s” is not a mobile number. "
                "Norwegian mobile numbers have 8 digits and start with 4 or 9, e.g. 912 34 567."
            ),
            params={"value": value},
            code="invalid_msisdn",
        )


@functools.cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in _known_timezones():
        raise ValidationError(
            _("“%(value)s” is not a known time zone. Use an IANA name such as Europe/Oslo."),
            params={"value": value},
            code="invalid_timezone",
        )
