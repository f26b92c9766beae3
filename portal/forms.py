"""Portal forms: login, calendar settings, a user's overrides, the subject preview, the notice calculator."""

import datetime as dt
import unicodedata
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.contrib.auth.signals import user_login_failed
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from common.typed_dates import DateInRangeField, DateTimeInRangeField
from customers.models import WEEKDAYS, CustomerSettings, ServiceUser
from customers.validators import validate_msisdn
from portal import selectors
from sync.models import AbsenceProfile


class PortalLoginForm(AuthenticationForm):
    """The portal's sign-in. A login that may not use the portal (staff, no membership) gets exactly the
    answer of a wrong password, and django-axes counts it as one: the portal confirms no password."""

    username = forms.CharField(
        label=_("E-mail"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "username"})
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _(
            "Wrong e-mail address or password. Check both and try again, or choose a new password under "
            "“Forgot your password?”."
        ),
    }

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not selectors.portal_logins().filter(pk=user.pk).exists():
            user_login_failed.send(
                sender=__name__, credentials={"username": self.cleaned_data["username"]}, request=self.request
            )
            raise self.get_invalid_login_error()


class PortalPasswordResetForm(PasswordResetForm):
    """“Forgot your password?”: a link only for portal logins with this address (in any case), never for
    staff. Every address gets the same answer, so the page tells nothing about who has a login."""

    def get_users(self, email: str) -> Iterator[Any]:
        folded = unicodedata.normalize("NFKC", email).casefold()
        for user in selectors.portal_logins().filter(email__iexact=email):
            # The database's iexact may match more than Python's case folding does (CVE-2019-19844).
            if unicodedata.normalize("NFKC", user.email).casefold() == folded:
                yield user


class _TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self) -> None:
        super().__init__(format="%H:%M")


OFFICE_FIELDS = [f"{day}_{which}" for day, _label in WEEKDAYS for which in ("start", "end")]


class SettingsForm(forms.ModelForm):
    class Meta:
        model = CustomerSettings
        fields = [
            *OFFICE_FIELDS,
            "office_hours_only",
            "public_holidays",
            "default_profile",
            "out_of_office_profile",
            "divert_by_default",
            "include_tentative",
        ]
        widgets = {name: _TimeInput() for name in OFFICE_FIELDS}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("default_profile", "out_of_office_profile"):
            self.fields[name].queryset = AbsenceProfile.objects.order_by("position", "full_name")  # type: ignore[attr-defined]
            self.fields[name].empty_label = None  # type: ignore[attr-defined]

    def weekday_rows(self) -> list[tuple[Any, forms.BoundField, forms.BoundField]]:
        return [(label, self[f"{day}_start"], self[f"{day}_end"]) for day, label in WEEKDAYS]


class _CompanyYesNoSelect(forms.NullBooleanSelect):
    """Yes / No / the company's setting; the stored choice is shown selected (a plain Select showed none
    for True and False, so saving the page unchanged reset the user to the company's setting)."""

    def __init__(self) -> None:
        super().__init__()
        self.choices = [("unknown", _("The company's setting")), ("true", _("Yes")), ("false", _("No"))]


class OverridesForm(forms.ModelForm):
    divert_by_default = forms.NullBooleanField(
        label=_("Divert to voicemail by default"), required=False, widget=_CompanyYesNoSelect()
    )

    class Meta:
        model = ServiceUser
        fields = ["default_profile", "divert_by_default"]

    def __init__(self, *args: Any, company_profile: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["default_profile"]
        field.help_text = ""
        field.queryset = AbsenceProfile.objects.order_by("position", "full_name")  # type: ignore[attr-defined]
        field.empty_label = _("The company's setting (%(profile)s)") % {"profile": company_profile}  # type: ignore[attr-defined]


class _DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M")


SHOW_AS_CHOICES = [
    ("busy", _("Busy")),
    ("oof", _("Out of office")),
    ("tentative", _("Tentative")),
    ("workingElsewhere", _("Working elsewhere")),
    ("free", _("Free")),
]


class TrySubjectForm(forms.Form):
    subject = forms.CharField(
        label=_("Subject"), max_length=300, help_text=_("For example “Kundemøte &For” or “Sommerferie &+Ferie”.")
    )
    start = DateTimeInRangeField(label=_("Start"), widget=_DateTimeInput(), input_formats=["%Y-%m-%dT%H:%M"])
    end = DateTimeInRangeField(label=_("End"), widget=_DateTimeInput(), input_formats=["%Y-%m-%dT%H:%M"])
    show_as = forms.ChoiceField(label=_("Show as"), choices=SHOW_AS_CHOICES, initial="busy")
    all_day = forms.BooleanField(label=_("All-day appointment"), required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end <= start:
                self.add_error("end", _("The end must be after the start."))
            elif end - start > dt.timedelta(days=31):
                self.add_error("end", _("Try an appointment of at most 31 days."))
        return data

    @classmethod
    def example(cls, *, now: dt.datetime) -> dict[str, str]:
        """Next weekday 10:00–11:30 local time, with a code, as the form's first values."""
        day = timezone.localtime(now).date() + dt.timedelta(days=1)
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)
        return {
            "subject": "Kundemøte hos Telenor &For",
            "start": f"{day:%Y-%m-%d}T10:00",
            "end": f"{day:%Y-%m-%d}T11:30",
            "show_as": "busy",
        }


class NoticeDateForm(forms.Form):
    notice = DateInRangeField(
        label=_("Notice given on"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )


class TerminationForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("I confirm that we terminate Kalender Push, and that I may do so on behalf of the company."),
        required=True,
        error_messages={"required": _("Tick the box to confirm the termination.")},
    )


class MobileNumberForm(forms.Form):
    """A user's MBN mobile number, set or corrected by the customer's IT admin (saved by
    `services.set_mobile_number`, which also checks it against MBN)."""

    msisdn = forms.CharField(
        label=_("MBN mobile number"),
        required=False,
        max_length=30,
        validators=[validate_msisdn],
        help_text=_(
            "The user's mobile subscription in your company's Telenor MBN, e.g. 912 34 567. "
            "Leave it empty to have the user matched by e-mail address again."
        ),
    )


# --- connections ------------------------------------------------------------------------------------

SECRET_MAX_LENGTH = 256


class _SecretInput(forms.PasswordInput):
    """A password box that never shows what is stored: empty on every page, "stored" as its placeholder when
    there is one (a blank box then keeps it)."""

    def __init__(self, *, stored: bool) -> None:
        attrs = {"autocomplete": "new-password"}
        if stored:
            attrs["placeholder"] = str(_("stored – leave empty to keep it"))
        super().__init__(attrs=attrs, render_value=False)


class ConnectionForm(forms.Form):
    """A connection's form. `ConnectionProblem.field` names one of its fields (the service's keyword), so a
    problem is shown where the input is; a blank password keeps the stored one."""

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, secret_stored: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            field = self.fields[name]
            field.widget = _SecretInput(stored=secret_stored)
            field.required = not secret_stored

    def show_problem(self, *, field: str | None, what: str, what_to_do: str) -> None:
        message = f"{what} {what_to_do}".strip()
        self.add_error(field if field in self.fields else None, message)

    def changes_nothing(self) -> bool:
        """Posted as shown: the stored values and no new secret (saving it would only test again)."""
        return not self.has_changed()


class GoogleConnectionForm(ConnectionForm):
    admin_subject = forms.EmailField(
        label=_("Administrator's address"),
        max_length=254,
        help_text=_("A Google Workspace administrator the service acts as to read the group's members."),
    )
    group = forms.EmailField(
        label=_("Activation group"),
        max_length=200,
        help_text=_("The address of the Google group whose members get Kalender Push, e.g. kalenderpush@firma.no."),
    )


class ExchangeConnectionForm(ConnectionForm):
    secret_fields = ("password",)

    endpoint = forms.URLField(
        label=_("EWS address"),
        max_length=200,
        assume_scheme="https",
        help_text=_("Your Exchange server's EWS address, e.g. https://mail.firma.no/EWS/Exchange.asmx."),
    )
    username = forms.CharField(
        label=_("Service account"),
        max_length=200,
        help_text=_(
            "The e-mail address of the account with the ApplicationImpersonation role, e.g. kalenderpush@firma.no."
        ),
    )
    password = forms.CharField(label=_("Password"), max_length=SECRET_MAX_LENGTH, strip=False)
    group = forms.CharField(
        label=_("Activation group"),
        max_length=200,
        help_text=_("The address of the distribution group whose members get Kalender Push."),
    )


class MbnConnectionForm(ConnectionForm):
    secret_fields = ("password",)

    enterprise_id = forms.CharField(
        label=_("Enterprise id"),
        max_length=100,
        help_text=_("Your company's enterprise id in Telenor MBN (shown in Min Bedrift)."),
    )
    username = forms.CharField(
        label=_("API user"), max_length=200, help_text=_("The API user you created in Min Bedrift for Kalender Push.")
    )
    password = forms.CharField(label=_("Password"), max_length=SECRET_MAX_LENGTH, strip=False)


CONNECTION_CHOICES = [("microsoft365", "Microsoft 365"), ("google", "Google"), ("ews", "Exchange"), ("mbn", "MBN")]


class ConnectionTestForm(forms.Form):
    """The "Test again" button: which connection, and for a calendar, which source."""

    connection = forms.ChoiceField(choices=CONNECTION_CHOICES)
    source = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


class GroupSearchForm(forms.Form):
    q = forms.CharField(label=_("Search for the group"), max_length=100)


class GroupChoiceForm(forms.Form):
    group = forms.CharField(max_length=200, error_messages={"required": _("Choose one of the groups found.")})
    q = forms.CharField(max_length=100, required=False)
