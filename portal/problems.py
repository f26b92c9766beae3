"""Sync errors in plain words for a customer's IT admin: what is wrong and what to do about it.

The pipeline records each error as a code (`sync.errors.SyncErrorCode`) next to its English text for staff;
here the code becomes a title and advice in the portal's language (`sync.errors.describe`, the words admin
shows too), with the text kept as a technical detail. Nothing is guessed from the text. Users not connected
to MBN are not errors: they have words of their own (`not_connected`, `mbn_not_connected`), a warning.
"""

from dataclasses import dataclass

from django.utils.translation import gettext as _

from sync.errors import describe


@dataclass(frozen=True)
class Problem:
    title: str
    advice: str
    detail: str = ""
    count: int = 0
    link: str = ""
    severity: str = "error"  # "error": something failed; "warning": waiting for someone to act
    link_text: str = ""  # the link's words, when it leads elsewhere than to users


def explain(code: str, *, detail: str = "", count: int = 0, link: str = "") -> Problem:
    """The plain-words problem behind a recorded error code; `detail` is the recorded text."""
    title, advice = describe(code)
    return Problem(title, advice, detail, count, link)


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


def mbn_not_connected(*, link: str = "") -> Problem:
    """The customer has no MBN access yet: nothing reaches the switchboard, and no retry changes that."""
    return Problem(
        _("Telenor MBN is not connected yet"),
        _(
            "Order the API subscription “Tilknytning Nettsoft Calendar Push” from Telenor, create an API user "
            "in Min Bedrift and connect it under Connections."
        ),
        severity="warning",
        link=link,
        link_text=_("Go to Connections") if link else "",
    )


def no_calendar_connected(*, link: str) -> Problem:
    """The customer has connected no calendar system yet: nobody gets the service."""
    return Problem(
        _("No calendar system is connected yet"),
        _("Connect your company's Microsoft 365, Google Workspace or Exchange under Connections."),
        severity="warning",
        link=link,
        link_text=_("Go to Connections"),
    )
