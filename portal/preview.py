"""The portal's "try a subject": one appointment through the same rules engine the sync uses."""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

from customers.models import CustomerSettings
from sync.rules import Absence, Event, SubjectCode, compute_absences
from sync.services import catalogue_or_default, rule_settings_for


@dataclass(frozen=True)
class SubjectPreview:
    code: SubjectCode
    absences: tuple[Absence, ...]
    explanation: list[str]


def preview_subject(
    *,
    customer_settings: CustomerSettings,
    subject: str,
    start: dt.datetime,
    end: dt.datetime,
    show_as: str,
    all_day: bool,
) -> SubjectPreview:
    """What one appointment would put on MBN with the customer's settings (naive times are local)."""
    rules = rule_settings_for(customer_settings=customer_settings)
    zone = ZoneInfo(rules.timezone)
    start = start.replace(tzinfo=zone) if start.tzinfo is None else start.astimezone(zone)
    end = end.replace(tzinfo=zone) if end.tzinfo is None else end.astimezone(zone)
    catalogue = catalogue_or_default()
    if all_day:
        last = end.date() if end.time() != dt.time() or end.date() == start.date() else end.date() - dt.timedelta(1)
        event = Event(
            "preview", start.date(), last + dt.timedelta(days=1), all_day=True, subject=subject, show_as=show_as
        )
    else:
        event = Event("preview", start, end, subject=subject, show_as=show_as)
    window_start = dt.datetime.combine(start.date() - dt.timedelta(days=1), dt.time(), tzinfo=zone)
    window_end = dt.datetime.combine(end.date() + dt.timedelta(days=2), dt.time(), tzinfo=zone)
    absences = compute_absences(
        settings=rules, window_start=window_start, window_end=window_end, events=[event], catalogue=catalogue
    )
    code = catalogue.parse(subject)
    return SubjectPreview(code, absences, _explain(code, rules, show_as, absences))


def _explain(code: SubjectCode, rules, show_as: str, absences: tuple[Absence, ...]) -> list[str]:  # type: ignore[no-untyped-def]
    lines = []
    if code.profile is not None:
        lines.append(
            _("The code in the subject chooses the profile “%(profile)s”.") % {"profile": code.profile.profile}
        )
    elif show_as == "oof":
        lines.append(_("No profile code: “Out of office” gives the out-of-office profile."))
    else:
        lines.append(_("No profile code: the default profile is used."))
    if code.divert is True:
        lines.append(_("&+ in the subject: calls divert to voicemail."))
    elif code.divert is False:
        lines.append(_("&- in the subject: calls are not diverted."))
    if not absences:
        if show_as in ("free", "workingElsewhere") and not code.explicit:
            lines.append(_("Appointments shown as free or working elsewhere are only pushed with a code."))
        elif show_as == "tentative" and not rules.include_tentative and not code.explicit:
            lines.append(_("Tentative appointments are not included (see Settings), so nothing is sent to MBN."))
        elif rules.office_hours_only:
            lines.append(_("The appointment lies outside office hours, and only office hours are pushed."))
        else:
            lines.append(_("Nothing is sent to MBN for this appointment."))
    return lines
