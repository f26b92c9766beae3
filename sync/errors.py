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


# --- connecting a calendar system or MBN (sync.connections) ---------------------------------------------------


class ConnectionErrorCode(models.TextChoices):
    """Why connecting a calendar system or MBN failed, as the customer's IT admin can act on it.

    Stored on the connection (`test_error_code`) and the audit (`ConnectionEvent.error_code`) with parameters;
    worded by `describe_connection_error`. The labels are for staff lists (admin filters)."""

    STATE_INVALID = "state_invalid", _("Consent answer not recognised")
    STATE_USED = "state_used", _("Consent answer already used")
    STATE_EXPIRED = "state_expired", _("Consent answer expired")
    STATE_OTHER_SESSION = "state_other_session", _("Consent answer from another session")
    CONSENT_REFUSED = "consent_refused", _("Consent refused")
    CONSENT_FAILED = "consent_failed", _("Consent failed")
    TENANT_MISMATCH = "tenant_mismatch", _("Consent for another organisation")
    NOT_CONFIGURED = "not_configured", _("Not set up by Nettsoft")
    GROUP_NOT_FOUND = "group_not_found", _("Group not found")
    GROUP_EMPTY = "group_empty", _("Group empty")
    TOKEN_REFUSED = "token_refused", _("Sign-in refused")
    PERMISSION_MISSING = "permission_missing", _("Permission missing")
    CALENDAR_UNREADABLE = "calendar_unreadable", _("Calendar unreadable")
    EWS_UNREACHABLE = "ews_unreachable", _("Exchange server unreachable")
    EWS_LOGIN_FAILED = "ews_login_failed", _("Exchange sign-in refused")
    EWS_IMPERSONATION_DENIED = "ews_impersonation_denied", _("Exchange impersonation denied")
    GOOGLE_DELEGATION_MISSING = "google_delegation_missing", _("Google domain-wide delegation missing")
    MBN_LOGIN_FAILED = "mbn_login_failed", _("MBN sign-in refused")
    MBN_ENTERPRISE_NOT_FOUND = "mbn_enterprise_not_found", _("MBN enterprise not found")
    MBN_UNREACHABLE = "mbn_unreachable", _("MBN unreachable")
    TIMEOUT = "timeout", _("No answer in time")
    INVALID_INPUT = "invalid_input", _("Invalid input")
    REQUEST_FAILED = "request_failed", _("Request refused")
    TENANT_TAKEN = "tenant_taken", _("Organisation connected to another customer")
    GOOGLE_DOMAIN_TAKEN = "google_domain_taken", _("Google domain connected to another customer")


_START_AGAIN = gettext_noop(
    "Nothing was saved. Start again with “Connect Microsoft 365” on the connections page and finish within "
    "%(minutes)s minutes, in the same browser."
)

# (what is wrong, what to do) per code; %(name)s placeholders are filled from the stored parameters.
CONNECTION_WORDING: dict[ConnectionErrorCode, tuple[str, str]] = {
    ConnectionErrorCode.STATE_INVALID: (
        gettext_noop("The answer from Microsoft does not belong to a connection started in Kalender Push."),
        _START_AGAIN,
    ),
    ConnectionErrorCode.STATE_USED: (
        gettext_noop("This answer from Microsoft has already been used (the page was reloaded or opened twice)."),
        _START_AGAIN,
    ),
    ConnectionErrorCode.STATE_EXPIRED: (
        gettext_noop("The consent took more than %(minutes)s minutes, so the answer from Microsoft has expired."),
        _START_AGAIN,
    ),
    ConnectionErrorCode.STATE_OTHER_SESSION: (
        gettext_noop("The consent was started by another user or in another browser session."),
        _START_AGAIN,
    ),
    ConnectionErrorCode.CONSENT_REFUSED: (
        gettext_noop("The administrator refused access."),
        gettext_noop(
            "Nothing was saved. Start again and choose “Accept” on Microsoft's page, signed in as a Global "
            "Administrator or Privileged Role Administrator of your Microsoft 365 organisation."
        ),
    ),
    ConnectionErrorCode.CONSENT_FAILED: (
        gettext_noop("Microsoft did not grant access: %(description)s"),
        gettext_noop(
            "Nothing was saved. Sign in as a Global Administrator or Privileged Role Administrator and start "
            "again; if Microsoft gives the same answer, send it to Nettsoft."
        ),
    ),
    ConnectionErrorCode.TENANT_MISMATCH: (
        gettext_noop(
            "The consent was given in another Microsoft 365 organisation (%(tenant)s) than the connected one "
            "(%(expected)s)."
        ),
        gettext_noop(
            "Nothing was changed. Sign in to Microsoft with an administrator of the organisation already "
            "connected, or disconnect it first (“Disconnect” on its card) and connect again."
        ),
    ),
    ConnectionErrorCode.NOT_CONFIGURED: (
        gettext_noop("Kalender Push is not yet set up to connect to %(system)s."),
        gettext_noop("Nothing is wrong on your side: contact Nettsoft, who must finish the set-up."),
    ),
    ConnectionErrorCode.GROUP_NOT_FOUND: (
        gettext_noop("The group “%(group)s” was not found in %(system)s."),
        gettext_noop(
            "Check the group's name or address and that it still exists, or pick one from the search; "
            "nothing was saved."
        ),
    ),
    ConnectionErrorCode.GROUP_EMPTY: (
        gettext_noop("The group “%(group)s” has no members whose calendars can be read."),
        gettext_noop("Add the employees whose calendars should be pushed to the group, then try again."),
    ),
    ConnectionErrorCode.TOKEN_REFUSED: (
        gettext_noop("%(system)s refused Kalender Push's sign-in."),
        gettext_noop(
            "For Microsoft 365 through Nettsoft's app: connect again so an administrator consents once more "
            "(the consent may have been removed in Entra ID → Enterprise applications). With your own app "
            "registration or service account: check its id and secret."
        ),
    ),
    ConnectionErrorCode.PERMISSION_MISSING: (
        gettext_noop("Kalender Push lacks the permission %(permission)s in %(system)s."),
        gettext_noop(
            "Microsoft 365: connect again and accept every permission Microsoft lists. Exchange: see that an "
            "RBAC scope for the app includes the group's mailboxes. Then test again."
        ),
    ),
    ConnectionErrorCode.CALENDAR_UNREADABLE: (
        gettext_noop("The calendar of %(user)s could not be read."),
        gettext_noop(
            "Check that the user has a mailbox or calendar (a licence), and that no access scope in Exchange "
            "leaves the user out; or remove the user from the group. Then test again."
        ),
    ),
    ConnectionErrorCode.EWS_UNREACHABLE: (
        gettext_noop("The Exchange server at %(endpoint)s could not be reached."),
        gettext_noop(
            "Check the address (like https://mail.firma.no/EWS/Exchange.asmx) and that the server answers from "
            "the Internet on HTTPS with a valid certificate; nothing was saved."
        ),
    ),
    ConnectionErrorCode.EWS_LOGIN_FAILED: (
        gettext_noop("Exchange refused the service account %(username)s."),
        gettext_noop(
            "Check the service account's e-mail address and password, and that the account is not locked; nothing "
            "was saved."
        ),
    ),
    ConnectionErrorCode.EWS_IMPERSONATION_DENIED: (
        gettext_noop("The service account %(username)s may not open the calendar of %(user)s."),
        gettext_noop(
            "Give the service account the ApplicationImpersonation role in Exchange (New-ManagementRoleAssignment "
            "-Role ApplicationImpersonation -User <account>), wait a few minutes and try again."
        ),
    ),
    ConnectionErrorCode.GOOGLE_DELEGATION_MISSING: (
        gettext_noop("Google refused Kalender Push's service account: domain-wide delegation is not authorised."),
        gettext_noop(
            "In Google Admin → Security → Access and data control → API controls → Manage domain wide "
            "delegation, add the client id %(client_id)s with exactly the scopes shown, wait a few minutes and "
            "try again."
        ),
    ),
    ConnectionErrorCode.MBN_LOGIN_FAILED: (
        gettext_noop("Telenor MBN refused the API user %(username)s."),
        gettext_noop(
            "Check the API user's name and password in Min Bedrift (the password may have been changed or have "
            "expired); nothing was saved."
        ),
    ),
    ConnectionErrorCode.MBN_ENTERPRISE_NOT_FOUND: (
        gettext_noop("Telenor MBN does not know the enterprise id %(enterprise_id)s for this API user."),
        gettext_noop(
            "Copy the enterprise id from Min Bedrift, and check that the API user belongs to the same "
            "enterprise; nothing was saved."
        ),
    ),
    ConnectionErrorCode.MBN_UNREACHABLE: (
        gettext_noop("Telenor MBN could not be reached."),
        gettext_noop("Try again in a few minutes; contact Nettsoft if it lasts more than an hour."),
    ),
    ConnectionErrorCode.TIMEOUT: (
        gettext_noop("%(system)s did not answer in time."),
        gettext_noop("Try again in a few minutes; contact Nettsoft if it lasts more than an hour."),
    ),
    ConnectionErrorCode.INVALID_INPUT: (
        gettext_noop("%(message)s"),
        gettext_noop("Correct the field and save again."),
    ),
    ConnectionErrorCode.REQUEST_FAILED: (
        gettext_noop("%(system)s refused a request: %(detail)s"),
        gettext_noop("Try again; if the same answer comes back, send it to Nettsoft."),
    ),
    ConnectionErrorCode.TENANT_TAKEN: (
        gettext_noop("The Microsoft 365 organisation %(tenant)s is already connected to another customer."),
        gettext_noop(
            "Nothing was saved. Check that you signed in to Microsoft with an administrator of your own "
            "organisation; if it is yours, contact Nettsoft."
        ),
    ),
    ConnectionErrorCode.GOOGLE_DOMAIN_TAKEN: (
        gettext_noop("The Google Workspace domain %(domain)s is already connected to another customer."),
        gettext_noop("Nothing was saved. Check the addresses; if the domain is yours, contact Nettsoft."),
    ),
}


class _Blank(dict[str, Any]):
    """Parameters for a worded message: a missing one reads as nothing rather than failing."""

    def __missing__(self, key: str) -> str:
        return ""


def describe_connection_error(code: str, params: Any = None) -> tuple[str, str]:
    """(what is wrong, what to do) for a stored connection error code, in the active language (Norwegian in
    the portal). An unknown code words as REQUEST_FAILED."""
    known = ConnectionErrorCode(code) if code in ConnectionErrorCode.values else ConnectionErrorCode.REQUEST_FAILED
    what, what_to_do = CONNECTION_WORDING[known]
    values = _Blank({key: str(value) for key, value in dict(params or {}).items()})
    return (gettext(what) % values).strip(), (gettext(what_to_do) % values).strip()
