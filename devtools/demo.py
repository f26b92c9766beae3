"""Wiring customers to the loopback simulators: the demo (`make run`), end-to-end tests and `bench_sync`.

Creates the tenant, users and activation group in the Graph simulator, the enterprise and subscribers
in the MBN simulator, and the matching CalendarSource and MbnConnection rows; scripts realistic calendars.
"""

import dataclasses
import datetime as dt
import functools
import random
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from django.utils.module_loading import import_string
from django_q.models import OrmQ

from customers.models import Customer, ServiceUser, Subscription
from sync.models import CalendarSource, CalendarUser, MbnConnection
from sync.rules import Event

OSLO = ZoneInfo("Europe/Oslo")
SUBJECTS = [
    ("Prosjektmøte", "busy"),
    ("Kundemøte &Eks", "busy"),
    ("Lunsj &Ute", "free"),
    ("1:1 med leder", "busy"),
    ("Salgsmøte i Tyskland &For", "busy"),
    ("Q&A med R&D", "busy"),
    ("Fokustid &Ikt", "busy"),
    ("Styremøte &-", "busy"),
    ("Tannlege &Gåt", "oof"),
    ("Planlegging", "tentative"),
    ("Kurs", "oof"),
    ("Intervju &+", "busy"),
    ("Privat avtale", "busy"),
]


def graph_user_id(user: ServiceUser) -> str:
    return f"00000000-0000-4000-8000-{user.pk:012d}"


def wire_customer(
    *,
    sims,
    customer: Customer,
    users: Sequence[ServiceUser],
    tenant_id: str,  # type: ignore[no-untyped-def]
    enterprise_id: str,
    mbn_rate_per_second: int = 20,
) -> CalendarSource:
    """Put the customer's users in the simulators and point the customer's source and MBN connection there."""
    client_id, secret = f"app-{tenant_id}", f"secret-{tenant_id}"
    sims.graph.add_tenant(tenant_id, client_id, secret)
    for user in users:
        sims.graph.add_user(tenant_id, graph_user_id(user), user.email, user.name or user.email)
    group_id = f"group-{tenant_id}"
    sims.graph.add_group(tenant_id, group_id, "Kalender Push", [graph_user_id(u) for u in users])
    wire_mbn(sims, customer, users, enterprise_id, mbn_rate_per_second)
    source, _created = CalendarSource.objects.update_or_create(
        customer=customer,
        kind=CalendarSource.Kind.GRAPH,
        defaults={"tenant_id": tenant_id, "client_id": client_id, "activation_group": group_id},
    )
    source.set_secret(secret)
    source.save()
    _calendar_users(source, users, graph_user_id)
    return source


def scripted_events(*, rng: random.Random, start: dt.datetime, days: int, count: int, prefix: str) -> list[Event]:
    """`count` appointments over `days` days from `start`: meetings, lunches, trips, all-day holidays."""
    events = []
    first_day = start.astimezone(OSLO).date()
    for index in range(count):
        day = first_day + dt.timedelta(days=rng.randrange(days))
        if rng.random() < 0.06:
            subject = rng.choice(["&Ferie", "&-Ferie", "Kurs &For", "&Syk"])
            events.append(
                Event(
                    f"{prefix}{index}",
                    day,
                    day + dt.timedelta(days=rng.choice([1, 1, 2, 3])),
                    all_day=True,
                    subject=subject,
                    show_as=rng.choice(["free", "oof"]),
                )
            )
            continue
        subject, show_as = rng.choice(SUBJECTS)
        begin = dt.datetime.combine(day, dt.time(7), OSLO) + dt.timedelta(minutes=15 * rng.randrange(0, 44))
        length = dt.timedelta(minutes=15 * rng.choice([1, 2, 2, 4, 4, 6, 8]))
        events.append(
            Event(
                f"{prefix}{index}",
                begin,
                begin + length,
                subject=subject,
                show_as=show_as,
                response=rng.choices(["accepted", "organizer", "tentative", "declined"], [60, 25, 10, 5])[0],
                cancelled=rng.random() < 0.03,
                private=rng.random() < 0.1,
            )
        )
    return events


def to_sim_events(events: Iterable[Event]):  # type: ignore[no-untyped-def]
    from devtools.simulators import SimEvent

    return [
        SimEvent(
            id=e.id,
            subject=e.subject,
            start=e.start,
            end=e.end,
            all_day=e.all_day,
            show_as=e.show_as,
            response=e.response,
            cancelled=e.cancelled,
            private=e.private,
        )
        for e in events
    ]


def wire_ews_customer(
    *,
    sims,
    customer: Customer,
    users: Sequence[ServiceUser],
    enterprise_id: str,  # type: ignore[no-untyped-def]
    mbn_rate_per_second: int = 20,
) -> CalendarSource:
    """The same for an Exchange on-premises customer: mailboxes, a distribution group and the customer's own service
    account (`ews_service_account`, allowed to impersonate its users' mailboxes) in the EWS simulator. Each customer
    has its own, as each has its own Exchange organisation: exchangelib keeps one session pool per server and account,
    so customers sharing one account would share one pool (the listener's streams and the syncs would run it dry)."""
    username, password = ews_service_account(customer)
    for user in users:
        sims.ews.add_mailbox(user.email, user.name or user.email)
    sims.ews.add_service_account(username, password, [user.email for user in users])
    group = f"kalenderpush@{customer.org_number}.example"
    sims.ews.add_group(group, [u.email for u in users])
    wire_mbn(sims, customer, users, enterprise_id, mbn_rate_per_second)
    source, _created = CalendarSource.objects.update_or_create(
        customer=customer,
        kind=CalendarSource.Kind.EWS,
        defaults={"endpoint": sims.ews_url, "username": username, "activation_group": group},
    )
    source.set_secret(password)
    source.save()
    _calendar_users(source, users, lambda user: user.email)
    return source


def ews_service_account(customer: Customer) -> tuple[str, str]:
    """(user name, password) of the customer's Exchange service account in the EWS simulator."""
    return f"svc-ews@{customer.org_number}.example", f"ews-secret-{customer.org_number}"


def wire_mbn(sims, customer: Customer, users: Sequence[ServiceUser], enterprise_id: str, rate: int) -> None:  # type: ignore[no-untyped-def]
    """The enterprise and the users' subscribers in the MBN simulator, and the customer's MbnConnection; a
    customer without an open subscription gets a pending one (onboarding), without which it is not served."""
    if not customer.subscriptions.exclude(status=Subscription.Status.ENDED).exists():
        Subscription.objects.create(customer=customer, term_months=0, signed_on=dt.date(2026, 1, 1))
    sims.mbn.add_enterprise(
        enterprise_id, f"mbn-{enterprise_id}", "mbn-secret", f"api-{enterprise_id}", "mbn-pass", rate_per_second=rate
    )
    for user in users:
        if user.msisdn:
            sims.mbn.add_subscriber(enterprise_id, user.msisdn, user.email, user.name or user.email)
    connection, _created = MbnConnection.objects.update_or_create(
        customer=customer,
        defaults={
            "enterprise_id": enterprise_id,
            "client_id": f"mbn-{enterprise_id}",
            "username": f"api-{enterprise_id}",
        },
    )
    connection.set_secrets(client_secret="mbn-secret", password="mbn-pass")
    connection.save()


@functools.lru_cache(maxsize=1)
def _private_key_pem() -> str:
    """One real RSA key per process (2048 bits take ~0.1 s to make: once, not once per benchmark customer)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_key(*, token_url: str) -> str:
    """A service-account key file (JSON) for the Google simulator: a real RSA key, a fake account."""
    import json

    pem = _private_key_pem()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "kalender-push",
            "private_key_id": "key-1",
            "private_key": pem,
            "client_email": "push@kalender-push.iam.gserviceaccount.com",
            "client_id": "100000000000000000001",
            "token_uri": token_url,
        }
    )


def wire_google_customer(
    *,
    sims,
    customer: Customer,
    users: Sequence[ServiceUser],
    enterprise_id: str,  # type: ignore[no-untyped-def]
    mbn_rate_per_second: int = 20,
) -> CalendarSource:
    """The same for a Google Workspace customer: users, an admin and a group in the Google simulator."""
    admin = f"admin@{customer.org_number}.example"
    sims.google.add_user(admin, "Admin", admin=True)
    for user in users:
        sims.google.add_user(user.email, user.name or user.email)
    group = f"kalenderpush@{customer.org_number}.example"
    sims.google.add_group(group, [u.email for u in users])
    wire_mbn(sims, customer, users, enterprise_id, mbn_rate_per_second)
    source, _created = CalendarSource.objects.update_or_create(
        customer=customer,
        kind=CalendarSource.Kind.GOOGLE,
        defaults={"admin_subject": admin, "activation_group": group},
    )
    source.set_secret(service_account_key(token_url=sims.google.token_url))
    source.save()
    _calendar_users(source, users, lambda user: user.email)
    return source


def as_provider_can_hold(kind: str, events: list[Event]) -> list[Event]:
    """The scripted events as the calendar system can represent them.

    Google Calendar has no "tentative" free/busy state (only busy or free, plus a tentative reply), so a
    tentative appointment there is a busy one that the user answered "tentative".
    """
    if kind != "google":
        return events
    return [
        dataclasses.replace(e, show_as="busy", response="tentative") if e.show_as == "tentative" else e for e in events
    ]


def _calendar_users(source: CalendarSource, users: Sequence[ServiceUser], provider_id) -> None:  # type: ignore[no-untyped-def]
    CalendarUser.objects.bulk_create(
        [CalendarUser(service_user=u, source=source, provider_user_id=provider_id(u)) for u in users],
        ignore_conflicts=True,
    )


def put_events(sims, kind: str, user: ServiceUser, events: Iterable[Event]) -> None:  # type: ignore[no-untyped-def]
    """Script the events in the user's calendar system ("graph", "ews" or "google"), in one call to the
    simulators (they may run in another process: `devtools.simulators.remote`)."""
    sims.put_events(kind, graph_user_id(user) if kind == "graph" else user.email, to_sim_events(events))


def run_queued_jobs(*, rounds: int = 5) -> list[str]:
    """Run, in this process, the q2 jobs queued so far (and those they queue, up to `rounds` times), as the
    cluster would: for tests and benchmarks without a q2 cluster. One-off schedules (retries after a
    back-off) are left for the caller. Returns what each job answered."""
    answers: list[str] = []
    for _round in range(rounds):
        queued = list(OrmQ.objects.order_by("pk"))
        if not queued:
            break
        OrmQ.objects.filter(pk__in=[task.pk for task in queued]).delete()
        for task in queued:
            function = task.task.get("func")
            run = import_string(function) if isinstance(function, str) else function
            answers.append(str(run(*(task.args() or ()), **(task.kwargs() or {}))))
    return answers
