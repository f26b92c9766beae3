"""Sync errors in plain words for a customer's IT admin: what is wrong and what to do about it.

The pipeline records errors in English for staff; here each is sorted into a kind the customer can act
on, in the portal's language, with the original text kept as a detail. Users not connected to MBN are
not errors: they have words of their own (`not_connected`, `mbn_not_connected`), a warning, not a failure.
"""

from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop


@dataclass(frozen=True)
class Problem:
    title: str
    advice: str
    detail: str = ""
    count: int = 0
    link: str = ""
    severity: str = "error"  # "error": something failed; "warning": waiting for someone to act


_KINDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("does not have google calendar",),
        gettext_noop("A user does not have Google Calendar"),
        gettext_noop(
            "Google Calendar is turned off for the user in Google Admin. Turn Calendar on for the user's "
            "organisational unit (Apps → Google Workspace → Calendar), or remove the user from the activation group."
        ),
    ),
    (
        ("manual absence in mbn overlaps",),
        gettext_noop("An absence registered by hand in MBN overlaps an appointment"),
        gettext_noop(
            "Remove the manual absence in the switchboard or the MBN app, or move the appointment; "
            "the next sync fills the gap by itself."
        ),
    ),
    (
        ("no mailbox", "has no mailbox", "check the address"),
        gettext_noop("A calendar could not be read"),
        gettext_noop(
            "The user has no mailbox under this address in your calendar system. Check the e-mail address, "
            "or remove the user from the activation group."
        ),
    ),
    (
        ("outside the app's access scope",),
        gettext_noop("A mailbox is outside Kalender Push's access in Exchange"),
        gettext_noop(
            "An Exchange Online administrator has limited which mailboxes the app may read (an application "
            "access policy or RBAC for Applications). Add the user to the group the app may read, or remove the "
            "user from the activation group."
        ),
    ),
    (
        ("mbn refused", "mbn api user", "mbn credentials", "mbn's token", "mbn (", "mbn did not answer", "mbn sent"),
        gettext_noop("Telenor MBN is not answering as expected"),
        gettext_noop(
            "We retry automatically. If this lasts more than an hour, check that the Telenor API subscription "
            "“Tilknytning Nettsoft Calendar Push” is still active, or contact Nettsoft."
        ),
    ),
    (
        ("permission", "consent", "impersonat", "forbidden", "403", "not allowed"),
        gettext_noop("Kalender Push lacks a permission in your calendar system"),
        gettext_noop(
            "Grant the permissions listed in the setup guide (for Microsoft 365: Calendars.Read and "
            "GroupMember.Read.All with admin consent; for Exchange: the impersonation role; for Google: "
            "domain-wide delegation), then wait a few minutes."
        ),
    ),
    (
        ("secret", "password", "credential", "login", "sign in", "token", "tenant", "unauthor", "401", "aadsts"),
        gettext_noop("Kalender Push cannot sign in to your calendar system"),
        gettext_noop(
            "The app secret or service account password may have expired or been changed. Send Nettsoft the "
            "new secret, or renew it in your calendar system."
        ),
    ),
    (
        ("timeout", "timed out", "could not be reached", "unavailable", "503", "502", "500", "throttl", "429"),
        gettext_noop("Your calendar system answered slowly or not at all"),
        gettext_noop("We retry automatically; nothing is lost. Contact Nettsoft if this lasts more than an hour."),
    ),
)


def explain(error: str, *, count: int = 0, link: str = "") -> Problem:
    """The plain-words problem behind a recorded error message."""
    folded = error.casefold()
    for needles, title, advice in _KINDS:
        if any(needle in folded for needle in needles):
            return Problem(_(title), _(advice), error, count, link)
    return Problem(
        _("The last sync failed"),
        _("We retry automatically. Contact Nettsoft if this lasts more than an hour."),
        error,
        count,
        link,
    )


def not_connected(*, count: int = 0, link: str = "") -> Problem:
    """Active users without an MBN number (`count` of them, or the one on its own page when 0)."""
    if count:
        return Problem(
            _("Users not connected to MBN"),
            _(
                "These users are in the activation group, but no Telenor MBN subscriber has their e-mail "
                "address, so their appointments do not reach the switchboard. This is not a sync error and "
                "waiting does not help: open each user and set their mobile number; it is checked against MBN "
                "at once."
            ),
            count=count,
            link=link,
            severity="warning",
        )
    return Problem(
        _("Not connected to MBN"),
        _(
            "No Telenor MBN subscriber has this user's e-mail address, so the appointments do not reach the "
            "switchboard. Set the user's mobile number below; it is checked against MBN at once."
        ),
        severity="warning",
    )


def mbn_not_connected() -> Problem:
    """The customer has no MBN access yet: nothing reaches the switchboard, and no retry changes that."""
    return Problem(
        _("Telenor MBN is not connected yet"),
        _(
            "Order the API subscription “Tilknytning Nettsoft Calendar Push” from Telenor and send "
            "Nettsoft the access details."
        ),
        severity="warning",
    )
