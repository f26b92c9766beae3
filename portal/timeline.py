"""The per-user timeline picture: the next days' absences on MBN as inline SVG, coloured by profile."""

import datetime as dt
from collections.abc import Sequence

from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from portal.selectors import TimelineAbsence

PALETTE = ("#1f6fb2", "#d9822b", "#2e8b57", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#b7950b")
_LEFT, _ROW, _WIDTH, _TOP = 92, 30, 720, 22
_HOUR = _WIDTH / 24


def colours(profiles: Sequence[str]) -> dict[str, str]:
    """A stable colour per profile name, in catalogue order."""
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(profiles)}


def render(
    absences: Sequence[TimelineAbsence], *, first_day: dt.date, days: int, colour_of: dict[str, str]
) -> SafeString:
    """Seven rows (one per day), 00–24 across; each absence a bar with its profile's colour."""
    height = _TOP + days * _ROW + 6
    grid = format_html_join(
        "",
        '<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#ddd"/>'
        '<text x="{x}" y="14" font-size="11" text-anchor="middle" fill="#555">{label}</text>',
        (
            {"x": f"{_LEFT + hour * _HOUR:.1f}", "top": _TOP - 4, "bottom": height - 4, "label": f"{hour:02d}"}
            for hour in range(0, 25, 3)
        ),
    )
    rows = []
    for index in range(days):
        day = first_day + dt.timedelta(days=index)
        y = _TOP + index * _ROW
        rows.append(
            format_html(
                '<text x="4" y="{}" font-size="12" fill="#222">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>',
                y + 18,
                date_format(day, "D j.n."),
                _LEFT,
                y + 4,
                _WIDTH,
                _ROW - 8,
                "#f4f6f8" if day.weekday() < 5 else "#eceff1",
            )
        )
        for absence in absences:
            start = max(absence.start, dt.datetime.combine(day, dt.time(), tzinfo=absence.start.tzinfo))
            end = min(
                absence.end, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=absence.end.tzinfo)
            )
            if end <= start:
                continue
            x0 = _LEFT + (start.hour + start.minute / 60) * _HOUR
            x1 = _LEFT + ((end - dt.datetime.combine(day, dt.time(), tzinfo=end.tzinfo)).total_seconds() / 3600) * _HOUR
            rows.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" rx="3" fill="{}"><title>{} {}–{}, {}</title></rect>',
                    f"{x0:.1f}",
                    y + 4,
                    f"{max(x1 - x0, 2):.1f}",
                    _ROW - 8,
                    colour_of.get(absence.profile, PALETTE[-1]),
                    absence.profile,
                    f"{absence.start:%d.%m %H:%M}",
                    f"{absence.end:%d.%m %H:%M}",
                    _("back at %(time)s") % {"time": f"{absence.end:%H:%M}"},
                )
            )
    return format_html(
        '<svg class="timeline" role="img" aria-labelledby="timeline-title" viewBox="0 0 {} {}" width="100%">'
        '<title id="timeline-title">{}</title>{}{}</svg>',
        _LEFT + _WIDTH + 8,
        height,
        _("Absences on MBN for the next %(days)s days") % {"days": days},
        grid,
        SafeString("".join(rows)),
    )
