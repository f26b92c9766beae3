"""Sync failures as codes: what the pipeline stores next to its English text, and the words people read.

Every provider and MBN error carries a `SyncErrorCode` and parameters (`error_code`, `error_params`); the
pipeline and the jobs store them on CalendarUser, CalendarSource and SyncRun beside the text, which stays
as technical detail for staff. The portal and admin word a code with `describe`: a title and what to do,
in the reader's language. No Django ORM here, so the providers can raise with a code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

_SLOW = _("Your calendar system answered slowly or not at all")
_MBN_SLOW = _("Telenor MBN is not answering as expected")
_FAILED = _("The last sync failed")


class SyncErrorCode(models.TextChoices):
    """What went wrong, as the customer can act on it; the label is the title people read."""

    AUTH_FAILED = "auth_failed", _("Kalender Push cannot sign in to your calendar system")
    PERMISSION_MISSING = "permission_missing", _("Kalender Push lacks a permission in your calendar system")
    MAILBOX_OUT_OF_SCOPE = "mailbox_out_of_scope", _("A mailbox is outside Kalender Push's access in Exchange")
    MAILBOX_NOT_FOUND = "mailbox_not_found", _("A calendar could not be read")
    MAILBOX_NOT_ENABLED = "mailbox_not_enabled", _("A user has no mailbox Kalender Push can read")
    CALENDAR_NOT_ENABLED = "calendar_not_enabled", _("A user does not have Google Calendar")
    NOT_FOUND = "not_found", _("Something Kalender Push reads is missing in your calendar system")
    REQUEST_REFUSED = "request_refused", _("Your calendar system refused a request")
    THROTTLED = "throttled", _SLOW
    SERVICE_UNAVAILABLE = "service_unavailable", _SLOW
    TIMEOUT = "timeout", _SLOW
    MBN_NOT_CONFIGURED = "mbn_not_configured", _("Kalender Push is not set up to reach Telenor MBN")
    MBN_AUTH_FAILED = "mbn_auth_failed", _("Telenor MBN refuses Kalender Push's sign-in")
    MBN_SUBSCRIBER_NOT_FOUND = "mbn_subscriber_not_found", _("The mobile number is not known to Telenor MBN")
    MBN_CONFLICT_MANUAL_ABSENCE = (
        "mbn_conflict_manual_absence",
        _("An absence registered by hand in MBN overlaps an appointment"),
    )
    MBN_REFUSED = "mbn_refused", _("Telenor MBN refused an absence")
    MBN_THROTTLED = "mbn_throttled", _MBN_SLOW
    MBN_UNAVAILABLE = "mbn_unavailable", _MBN_SLOW
    UNKNOWN = "unknown", _FAILED


_RETRY = gettext_noop("We retry automatically; nothing is lost. Contact Nettsoft if this lasts more than an hour.")
_MBN_RETRY = gettext_noop(
    "We retry automatically. If this lasts more than an hour, check that the Telenor API subscription "
    "“Tilknytning Nettsoft Calendar Push” is still active, or contact Nettsoft."
)
_RETRY_SHORT = gettext_noop("We retry automatically. Contact Nettsoft if this lasts more than an hour.")

ADVICE: dict[SyncErrorCode, str] = {
    SyncErrorCode.AUTH_FAILED: gettext_noop(
        "The app secret or service account password may have expired or been changed. Send Nettsoft the "
        "new secret, or renew it in your calendar system."
    ),
    SyncErrorCode.PERMISSION_MISSING: gettext_noop(
        "Grant the permissions listed in the setup guide (for Microsoft 365: Calendars.Read and "
        "GroupMember.Read.All with admin consent; for Exchange: the impersonation role; for Google: "
        "domain-wide delegation), then wait a few minutes."
    ),
    SyncErrorCode.MAILBOX_OUT_OF_SCOPE: gettext_noop(
        "An Exchange Online administrator has limited which mailboxes the app may read (an application "
        "access policy or RBAC for Applications). Add the user to the group the app may read, or remove the "
        "user from the activation group."
    ),
    SyncErrorCode.MAILBOX_NOT_FOUND: gettext_noop(
        "The user has no mailbox under this address in your calendar system. Check the e-mail address, "
        "or remove the user from the activation group."
    ),
    SyncErrorCode.MAILBOX_NOT_ENABLED: gettext_noop(
        "The user has no Exchange Online mailbox that can be read, usually because no Exchange Online licence "
        "is assigned. Give the user a licence with Exchange Online, or remove the user from the activation group."
    ),
    SyncErrorCode.CALENDAR_NOT_ENABLED: gettext_noop(
        "Google Calendar is turned off for the user in Google Admin. Turn Calendar on for the user's "
        "organisational unit (Apps → Google Workspace → Calendar), or remove the user from the activation group."
    ),
    SyncErrorCode.NOT_FOUND: gettext_noop(
        "A group, user or subscription Kalender Push reads no longer exists. Check that the activation group "
        "still exists under the same name; waiting does not help. Contact Nettsoft if the group was renamed."
    ),
    SyncErrorCode.REQUEST_REFUSED: gettext_noop(
        "Waiting does not help. Contact Nettsoft and quote the technical detail below."
    ),
    SyncErrorCode.THROTTLED: _RETRY,
    SyncErrorCode.SERVICE_UNAVAILABLE: _RETRY,
    SyncErrorCode.TIMEOUT: _RETRY,
    SyncErrorCode.MBN_NOT_CONFIGURED: gettext_noop(
        "Nothing is wrong on your side: Nettsoft must finish the MBN set-up of the service. Contact Nettsoft "
        "if this is still shown tomorrow."
    ),
    SyncErrorCode.MBN_AUTH_FAILED: gettext_noop(
        "Check that the Telenor API subscription “Tilknytning Nettsoft Calendar Push” is still active and that "
        "the API user in Min Bedrift was not changed or deleted; if its password was changed, send Nettsoft the "
        "new one. Waiting does not help."
    ),
    SyncErrorCode.MBN_SUBSCRIBER_NOT_FOUND: gettext_noop(
        "The user's mobile number is not a subscriber in your company's Telenor MBN. Correct the number on the "
        "user's page; it is checked against MBN at once."
    ),
    SyncErrorCode.MBN_CONFLICT_MANUAL_ABSENCE: gettext_noop(
        "Remove the manual absence in the switchboard or the MBN app, or move the appointment; "
        "the next sync fills the gap by itself."
    ),
    SyncErrorCode.MBN_REFUSED: gettext_noop(
        "Waiting does not help: Telenor MBN will refuse the same absence again. Contact Nettsoft and quote the "
        "technical detail below."
    ),
    SyncErrorCode.MBN_THROTTLED: _MBN_RETRY,
    SyncErrorCode.MBN_UNAVAILABLE: _MBN_RETRY,
    SyncErrorCode.UNKNOWN: _RETRY_SHORT,
}


def describe(code: str) -> tuple[str, str]:
    """(title, advice) for a stored code in the active language; an unknown or empty code words as UNKNOWN."""
    known = SyncErrorCode(code) if code in SyncErrorCode.values else SyncErrorCode.UNKNOWN
    return str(known.label), gettext(ADVICE[known])


@dataclass(frozen=True)
class SyncFailure:
    """A failure as stored: code, parameters and the English text for staff."""

    code: SyncErrorCode
    text: str
    params: dict[str, Any] = field(default_factory=dict)

    def on_calendar(self) -> dict[str, Any]:
        """The fields of CalendarUser and CalendarSource that record it (for `QuerySet.update`)."""
        return {"last_error": self.text[:2000], "last_error_code": self.code.value, "last_error_params": self.params}

    def on_run(self) -> dict[str, Any]:
        """The fields of SyncRun that record it."""
        return {"error": self.text, "error_code": self.code.value, "error_params": self.params}

    def retrying(self) -> SyncFailure:
        """The same failure while the sync waits for a retry (the text says so for staff)."""
        return SyncFailure(self.code, f"will retry: {self.text}", self.params)


NO_ERROR: dict[str, Any] = {"last_error": "", "last_error_code": "", "last_error_params": {}}


def failure_of(error: BaseException, *, text: str | None = None) -> SyncFailure:
    """The stored form of an exception: the code and parameters it carries (UNKNOWN when it carries none)."""
    code = getattr(error, "error_code", None)
    known = SyncErrorCode(code) if code in SyncErrorCode.values else SyncErrorCode.UNKNOWN
    params = getattr(error, "error_params", None)
    return SyncFailure(known, str(error) if text is None else text, dict(params) if isinstance(params, dict) else {})
