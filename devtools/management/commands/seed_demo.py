"""Creates the demo: three customers (terms none, 12 and 36 months) with settings, contacts and users, and a
fourth that has signed but connected nothing yet (Fjellheim Konsult AS), for trying the portal's connections.

Idempotent: running it again creates only what is missing and never overwrites what staff changed.
The staff superuser `admin` and, for every demo customer, a portal admin (it@…) and a portal
accountant (regnskap@…) are created only when DEBUG is on; their logins are printed every run.
"""

import datetime as dt
import json
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from billing.usage import ensure_snapshots
from customers.models import Contact, Customer, CustomerSettings, ServiceUser, Subscription
from customers.services import ensure_customer_settings, mark_live

FIRST_NAMES = [
    "Ola",
    "Kari",
    "Nora",
    "Jakob",
    "Emma",
    "Filip",
    "Ingrid",
    "Lukas",
    "Sofie",
    "Henrik",
    "Maja",
    "Aksel",
    "Sara",
    "Magnus",
    "Ida",
    "Emil",
    "Thea",
    "Oskar",
    "Hedda",
    "Sander",
    "Live",
    "Mathias",
    "Selma",
    "Tobias",
]
LAST_NAMES = [
    "Nordmann",
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
    "Berg",
    "Haugen",
    "Hagen",
    "Bakken",
    "Solberg",
    "Dahl",
    "Lie",
    "Strand",
    "Moen",
]


@dataclass(frozen=True)
class DemoCustomer:
    name: str
    org_number: str
    domain: str
    address_line: str
    postal_code: str
    city: str
    term_months: int
    users: int
    unmatched: int
    go_live_days_ago: int
    contact: str
    send_ehf: bool
    settings: dict[str, object]
    # Signed but not connected: no users, a pending subscription, nothing in its connections; its calendars and
    # MBN enterprise exist in the simulators (devtools.simulators.demo.load_onboarding) for the portal's flow.
    onboarding: bool = False


DEMO_CUSTOMERS = [
    DemoCustomer(
        name="Nordlys Regnskap AS",
        org_number="923765433",
        domain="nordlys-regnskap.no",
        address_line="Storgata 12",
        postal_code="9008",
        city="Tromsø",
        term_months=0,
        users=12,
        unmatched=1,
        go_live_days_ago=400,
        contact="Kari Nordmann",
        send_ehf=False,
        settings={},
    ),
    DemoCustomer(
        name="Bergen Byggteknikk AS",
        org_number="987654325",
        domain="bergen-byggteknikk.no",
        address_line="Kaigaten 4",
        postal_code="5015",
        city="Bergen",
        term_months=12,
        users=38,
        unmatched=3,
        go_live_days_ago=500,
        contact="Henrik Solberg",
        send_ehf=True,
        settings={"office_hours_only": True, "fri_end": dt.time(15, 0)},
    ),
    DemoCustomer(
        name="Trondheim Rør og Varme AS",
        org_number="931547828",
        domain="trondheim-ror.no",
        address_line="Fjordgata 30",
        postal_code="7010",
        city="Trondheim",
        term_months=36,
        users=6,
        unmatched=0,
        go_live_days_ago=250,
        contact="Ingrid Haugen",
        send_ehf=False,
        settings={"divert_by_default": False, "include_tentative": True},
    ),
    DemoCustomer(
        name="Fjellheim Konsult AS",
        org_number="913572467",
        domain="fjellheim-konsult.no",
        address_line="Dronningens gate 8",
        postal_code="7011",
        city="Trondheim",
        term_months=12,
        users=0,
        unmatched=0,
        go_live_days_ago=0,
        contact="Ingrid Berg",
        send_ehf=False,
        settings={},
        onboarding=True,
    ),
]


def _site_url() -> str:
    """Where the demo is served: PUBLIC_BASE_URL, which follows PORT unless it is set."""
    return settings.PUBLIC_BASE_URL.rstrip("/")


def _demo_users(spec: DemoCustomer) -> list[tuple[str, str, str]]:
    """(email, name, msisdn) for the customer's users; the same every run."""
    rng = random.Random(spec.org_number)
    pairs = rng.sample([(f, last) for f in FIRST_NAMES for last in LAST_NAMES], spec.users)
    users = []
    for index, (first, last) in enumerate(pairs):
        email = f"{first}.{last}@{spec.domain}".lower()
        msisdn = "" if index >= spec.users - spec.unmatched else f"+479{rng.randrange(10**7):07d}"
        users.append((email, f"{first} {last}", msisdn))
    return users


class Command(BaseCommand):
    help = "Creates the demo customers, subscriptions, settings and service users (and admin when DEBUG is on)."

    def handle(self, *args: object, **options: object) -> None:
        today = timezone.localdate()
        for spec in DEMO_CUSTOMERS:
            customer, users_created = self._seed_customer(spec, today)
            self.stdout.write(
                f"{customer.name} (customer {customer.customer_number}): "
                f"{customer.service_users.count()} service users ({users_created} new)"
            )
        created = ensure_snapshots(
            first=today - dt.timedelta(days=max(c.go_live_days_ago for c in DEMO_CUSTOMERS)),
            last=today - dt.timedelta(days=1),
            source="backfill",
        )
        self.stdout.write(f"Usage snapshots back-filled from the users' history: {created} new")
        self._seed_admin()
        self._seed_portal_logins()

    @transaction.atomic
    def _seed_customer(self, spec: DemoCustomer, today: dt.date) -> tuple[Customer, int]:
        customer = Customer.objects.filter(org_number=spec.org_number).first()
        if customer is None:
            customer = Customer(
                name=spec.name,
                org_number=spec.org_number,
                address_line=spec.address_line,
                postal_code=spec.postal_code,
                city=spec.city,
                invoice_email=f"faktura@{spec.domain}",
                send_ehf=spec.send_ehf,
                buyer_reference=spec.contact,
            )
            customer.full_clean()
            customer.save()
            first, last = spec.contact.split(" ", 1)
            Contact.objects.create(
                customer=customer,
                name=spec.contact,
                email=f"{first}.{last}@{spec.domain}".lower(),
                role=Contact.Role.ADMIN,
            )
        if not CustomerSettings.objects.filter(customer=customer).exists():
            CustomerSettings.objects.create(customer=customer, **spec.settings)
        ensure_customer_settings(customer=customer)
        if spec.onboarding:  # signed today, live once connected: the portal's connections page is its next step
            if not customer.subscriptions.exists():
                Subscription.objects.create(customer=customer, term_months=spec.term_months, signed_on=today)
            return customer, 0
        if not customer.subscriptions.exists():
            go_live = today - dt.timedelta(days=spec.go_live_days_ago)
            subscription = Subscription.objects.create(
                customer=customer, term_months=spec.term_months, signed_on=go_live - dt.timedelta(days=30)
            )
            mark_live(subscription=subscription, go_live=go_live)
        existing = set(customer.service_users.values_list("email", flat=True))
        live = customer.subscriptions.exclude(go_live__isnull=True).first()
        go_live = live.go_live if live and live.go_live else today
        users = [user for user in _demo_users(spec) if user[0] not in existing]
        # Most users are there from go-live; the last fifth joined 50 days ago, so usage varies.
        joined_late = max(1, spec.users // 5)
        for chunk, joined in ((users[:-joined_late], go_live), (users[-joined_late:], today - dt.timedelta(days=50))):
            bulk_create_with_history(
                [
                    ServiceUser(customer=customer, email=email, name=name, msisdn=msisdn)
                    for email, name, msisdn in chunk
                ],
                ServiceUser,
                default_date=dt.datetime.combine(
                    max(joined, go_live), dt.time(8), tzinfo=timezone.get_current_timezone()
                ),
            )
        return customer, len(users)

    def _seed_admin(self) -> None:
        if not settings.DEBUG:
            self.stdout.write(
                "DEBUG is off: no demo admin was created. Create staff users with `python manage.py createsuperuser`."
            )
            return
        password_file = Path(settings.DEMO_STATE_DIR) / "demo-admin-password"
        User = get_user_model()
        admin = User.objects.filter(username="admin").first()
        if admin is None:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@nettsoft.example", password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        else:
            password = password_file.read_text().strip() if password_file.is_file() else ""
            if not password or not admin.check_password(password):
                self.stdout.write(
                    "The user admin already exists with another password, left unchanged. "
                    "Set a new one with `python manage.py changepassword admin`."
                )
                return
        self.stdout.write(self.style.SUCCESS(f"Admin: {_site_url()}/admin/  user: admin  password: {password}"))

    def _seed_portal_logins(self) -> None:
        if not settings.DEBUG:
            return
        from portal.models import PortalMembership

        logins_file = Path(settings.DEMO_STATE_DIR) / "demo-portal-logins.json"
        known: dict[str, str] = json.loads(logins_file.read_text()) if logins_file.is_file() else {}
        User = get_user_model()
        lines = []
        for spec in DEMO_CUSTOMERS:
            customer = Customer.objects.get(org_number=spec.org_number)
            for local, role in (("it", PortalMembership.Role.ADMIN), ("regnskap", PortalMembership.Role.ACCOUNTANT)):
                email = f"{local}@{spec.domain}"
                user = User.objects.filter(username=email).first()
                if user is None:
                    known[email] = secrets.token_urlsafe(9)
                    user = User.objects.create_user(username=email, email=email, password=known[email])
                    PortalMembership.objects.create(user=user, customer=customer, role=role)
                password = known.get(email, "")
                if not password or not user.check_password(password):
                    password = "(changed; reset it with “Forgot your password?”)"
                lines.append(f"  {customer.name:<28} {role.label:<14} {email:<34} {password}")
        logins_file.parent.mkdir(parents=True, exist_ok=True)
        logins_file.write_text(json.dumps(known, indent=2) + "\n")
        logins_file.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"Portal: {_site_url()}/portal/  (user name, password)"))
        self.stdout.write("\n".join(lines))
