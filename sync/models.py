"""The absence-profile catalogue: the `&` codes of calendar-rules.md §1, as editable data."""

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

_TOKEN = re.compile(r"^[^\W\d_]+( [^\W\d_]+)*$")


def validate_profile_token(value: str) -> None:
    """A short code or full name: letters, with single spaces between words (no '&', '+', '-')."""
    if not _TOKEN.match(value):
        raise ValidationError(
            _("“%(value)s” can only contain letters, with single spaces between words."),
            params={"value": value},
            code="invalid_token",
        )


class AbsenceProfile(models.Model):
    short_code = models.CharField(
        _("short code"),
        max_length=20,
        validators=[validate_profile_token],
        help_text=_("Written after & in a subject, e.g. “For” for &For."),
    )
    full_name = models.CharField(
        _("full name"),
        max_length=60,
        validators=[validate_profile_token],
        help_text=_("May be written in full after &, e.g. &Forretningsreise."),
    )
    profile = models.CharField(_("profile shown"), max_length=60)
    mbn_reason = models.CharField(_("MBN reason"), max_length=60)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("absence profile")
        verbose_name_plural = _("absence profiles")
        ordering = ["position", "full_name"]
        constraints = [
            models.UniqueConstraint(
                Lower("short_code"),
                name="absenceprofile_short_code_ci_unique",
                violation_error_message=_("Another profile already has this short code."),
            ),
            models.UniqueConstraint(
                Lower("full_name"),
                name="absenceprofile_full_name_ci_unique",
                violation_error_message=_("Another profile already has this full name."),
            ),
        ]

    def __str__(self) -> str:
        return self.profile
