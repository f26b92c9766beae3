"""A demo tenant for the simulators: one Microsoft 365 customer with a week of appointments, and its MBN side.

`load_demo(sims, today)` scripts it and returns the credentials and ids as plain data, so `make run`,
benchmarks and `python -m devtools.simulators --demo` share one demo.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from devtools.simulators.events import SimEvent
from devtools.simulators.hub import Simulators

OSLO = ZoneInfo("Europe/Oslo")
TENANT_ID = "6f1c3d2a-0b4e-4c8a-9d7e-1a2b3c4d5e6f"
CLIENT_ID = "3b8e5f10-7c2d-4e9a-8f6b-0d1c2b3a4f5e"
CLIENT_SECRET = "demo-graph-secret"
GROUP_ID = "c0ffee00-0000-4000-8000-00000000a11e"
ENTERPRISE_ID = "demo-enterprise"
MBN_CREDENTIALS = {
    "client_id": "kalenderpush-demo",
    "client_secret": "demo-mbn-secret",
    "username": "api-user@firma.no",
    "password": "demo-mbn-password",
}

# (user id, e-mail, name, mobile number)
PEOPLE = (
    ("11111111-aaaa-4aaa-8aaa-000000000001", "ola.nordmann@firma.no", "Ola Nordmann", "+4791234567"),
    ("11111111-aaaa-4aaa-8aaa-000000000002", "kari.hansen@firma.no", "Kari Hansen", "+4792345678"),
    ("11111111-aaaa-4aaa-8aaa-000000000003", "per.olsen@firma.no", "Per Olsen", "+4793456789"),
)


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=OSLO)


def demo_events(monday: dt.date) -> dict[str, list[SimEvent]]:
    """The worked examples of calendar-rules.md §6, spread over the week starting `monday`."""
    tue, wed, thu = (monday + dt.timedelta(days=n) for n in (1, 2, 3))
    ola, kari, per = (person[0] for person in PEOPLE)
    return {
        ola: [
            SimEvent("ola-1", "Kundebesøk &Eks", _at(monday, 10), _at(monday, 12)),
            SimEvent("ola-2", "Salgsmøte i Tyskland &For", _at(tue, 9), _at(tue, 17)),
            SimEvent("ola-3", "Standup", _at(monday, 9), _at(monday, 9, 15), recurrence_days=5),
        ],
        kari: [
            SimEvent("kari-1", "&-Ferie", thu, thu + dt.timedelta(days=4), all_day=True, show_as="free"),
            SimEvent("kari-2", "Kundemøte", _at(wed, 13), _at(wed, 14)),
            SimEvent("kari-3", "Lunsj &Ute", _at(wed, 11), _at(wed, 11, 30), show_as="free"),
        ],
        per: [
            SimEvent("per-1", "&Ikt", _at(tue, 10), _at(tue, 12)),
            SimEvent("per-2", "Styremøte", _at(tue, 11), _at(tue, 13)),
            SimEvent("per-3", "Planlegging", _at(wed, 9), _at(wed, 10), show_as="tentative", response="tentative"),
        ],
    }


def load_demo(sims: Simulators, today: dt.date) -> dict[str, Any]:
    """Script the demo customer into running simulators; returns what a client needs to connect."""
    sims.graph.add_tenant(TENANT_ID, CLIENT_ID, CLIENT_SECRET)
    sims.mbn.add_enterprise(
        ENTERPRISE_ID,
        MBN_CREDENTIALS["client_id"],
        MBN_CREDENTIALS["client_secret"],
        MBN_CREDENTIALS["username"],
        MBN_CREDENTIALS["password"],
    )
    for user_id, email, name, msisdn in PEOPLE:
        sims.graph.add_user(TENANT_ID, user_id, email, name)
        sims.mbn.add_subscriber(ENTERPRISE_ID, msisdn, email, name)
    sims.graph.add_group(TENANT_ID, GROUP_ID, "Kalender Push", [person[0] for person in PEOPLE])
    monday = today - dt.timedelta(days=today.weekday())
    for user_id, events in demo_events(monday).items():
        for event in events:
            sims.graph.put_event(user_id, event)
    return {
        **sims.urls(),
        "graph": {
            "tenant_id": TENANT_ID,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authority": f"{sims.login_url}/{TENANT_ID}",
            "group_id": GROUP_ID,
        },
        "mbn": {"enterprise_id": ENTERPRISE_ID, **MBN_CREDENTIALS},
        "users": [
            {"id": user_id, "email": email, "name": name, "msisdn": msisdn} for user_id, email, name, msisdn in PEOPLE
        ],
    }
