"""A demo tenant for the simulators: one Microsoft 365 customer with a week of appointments, and its MBN side.

`load_demo(sims, today)` scripts it and returns the credentials and ids as plain data, so `make run`,
benchmarks and `python -m devtools.simulators --demo` share one demo.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
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


# --- Nettsoft's own credentials and a customer still to be connected (issue 17) ---------------------------------

NETTSOFT_CLIENT_ID = "5e7a1c44-2b0d-4f6e-9a31-7c8d9e0f1a2b"
NETTSOFT_APP_NAME = "Kalender Push (Nettsoft)"
NETTSOFT_PERMISSIONS = ("Calendars.Read", "GroupMember.Read.All")
SERVICE_ACCOUNT_EMAIL = "kalender-push@nettsoft-kalender-push.iam.gserviceaccount.com"
SERVICE_ACCOUNT_CLIENT_ID = "104729384756102938475"
MBN_PARTNER = {"client_id": "nettsoft-partner", "client_secret": "demo-partner-secret"}
GOOGLE_SCOPES = (
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
)

# The customer a newcomer connects through the portal: its tenant, groups, calendars and MBN enterprise.
ONBOARDING_TENANT_ID = "8d3b6a0e-5c4f-4e2d-9b1a-0f9e8d7c6b5a"
ONBOARDING_DOMAIN = "fjellheim-konsult.no"
ONBOARDING_ENTERPRISE_ID = "fjellheim"
ONBOARDING_MBN_USER = {"username": "api@fjellheim-konsult.no", "password": "fjellheim-mbn-passord"}
ONBOARDING_GOOGLE_ADMIN = f"admin@{ONBOARDING_DOMAIN}"
ONBOARDING_GOOGLE_GROUP = f"kalenderpush@{ONBOARDING_DOMAIN}"
UNDELEGATED_GOOGLE_ADMIN = "admin@ikke-delegert.no"  # a Workspace domain that has not authorised Nettsoft
# (user id, e-mail local part, name, mobile number or "" when the person has no Telenor subscription)
ONBOARDING_PEOPLE = (
    ("22222222-bbbb-4bbb-8bbb-000000000001", "ingrid.berg", "Ingrid Berg", "+4790011001"),
    ("22222222-bbbb-4bbb-8bbb-000000000002", "jonas.lie", "Jonas Lie", "+4790011002"),
    ("22222222-bbbb-4bbb-8bbb-000000000003", "sofie.dahl", "Sofie Dahl", "+4790011003"),
    ("22222222-bbbb-4bbb-8bbb-000000000004", "emil.strand", "Emil Strand", ""),
    ("22222222-bbbb-4bbb-8bbb-000000000005", "thea.moen", "Thea Moen", "+4790011005"),
    ("22222222-bbbb-4bbb-8bbb-000000000006", "oskar.bakken", "Oskar Bakken", "+4790011006"),
)
# (group id, display name, mail, members by index into ONBOARDING_PEOPLE)
ONBOARDING_GROUPS = (
    (
        "33333333-cccc-4ccc-8ccc-000000000001",
        "Kalender Push-brukere",
        f"kalenderpush@{ONBOARDING_DOMAIN}",
        (0, 1, 2, 3),
    ),
    ("33333333-cccc-4ccc-8ccc-000000000002", "Alle ansatte", f"alle@{ONBOARDING_DOMAIN}", (0, 1, 2, 3, 4, 5)),
    ("33333333-cccc-4ccc-8ccc-000000000003", "Salg", f"salg@{ONBOARDING_DOMAIN}", (1, 4)),
    ("33333333-cccc-4ccc-8ccc-000000000004", "Styret", f"styret@{ONBOARDING_DOMAIN}", ()),
)


def app_certificate(common_name: str = NETTSOFT_APP_NAME) -> tuple[str, str, str]:
    """A fresh self-signed certificate for an app registration: (private key PEM, certificate PEM, SHA-1
    thumbprint in upper-case hex, as Entra ID shows it under Certificates & secrets)."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=730))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    der = certificate.public_bytes(serialization.Encoding.DER)
    thumbprint = hashlib.sha1(der).hexdigest().upper()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode(), thumbprint


def service_account_info(token_url: str) -> dict[str, str]:
    """Nettsoft's service-account key (a real RSA key, a simulated account), as Google's JSON key file holds it."""
    key_pem, _certificate, _thumbprint = app_certificate("service account")
    return {
        "type": "service_account",
        "project_id": "nettsoft-kalender-push",
        "private_key_id": "nettsoft-key-1",
        "private_key": key_pem,
        "client_email": SERVICE_ACCOUNT_EMAIL,
        "client_id": SERVICE_ACCOUNT_CLIENT_ID,
        "token_uri": token_url,
    }


def register_nettsoft(sims: Simulators, directory: Path) -> dict[str, str]:
    """Nettsoft's multi-tenant app (a certificate; its key file written to `directory`), its Google service
    account (key file in `directory`) and MBN partner client, registered in the simulators. Returns the
    settings (environment variables) that make the application use them."""
    directory.mkdir(parents=True, exist_ok=True)
    key_pem, certificate_pem, thumbprint = app_certificate()
    key_file = directory / "nettsoft-graph-key.pem"
    key_file.write_text(key_pem)
    key_file.chmod(0o600)
    sims.login.add_multi_tenant_app(
        NETTSOFT_CLIENT_ID, name=NETTSOFT_APP_NAME, permissions=NETTSOFT_PERMISSIONS, certificates=[certificate_pem]
    )
    account_file = directory / "nettsoft-google-service-account.json"
    account_file.write_text(json.dumps(service_account_info(sims.google.token_url), indent=2))
    account_file.chmod(0o600)
    sims.google.add_service_account(SERVICE_ACCOUNT_EMAIL, SERVICE_ACCOUNT_CLIENT_ID)
    return {
        "NETTSOFT_GRAPH_CLIENT_ID": NETTSOFT_CLIENT_ID,
        "NETTSOFT_GRAPH_CERTIFICATE_KEY_FILE": str(key_file),
        "NETTSOFT_GRAPH_CERTIFICATE_THUMBPRINT": thumbprint,
        "NETTSOFT_GOOGLE_SERVICE_ACCOUNT_FILE": str(account_file),
        "MBN_PARTNER_CLIENT_ID": MBN_PARTNER["client_id"],
        "MBN_PARTNER_CLIENT_SECRET": MBN_PARTNER["client_secret"],
    }


def load_onboarding(sims: Simulators, today: dt.date) -> dict[str, Any]:
    """Script the customer that connects itself through the portal: a Microsoft 365 tenant without any app
    (Nettsoft's arrives by admin consent; the login simulator's consent page signs in to this tenant), its
    groups and users with a week of appointments, the same people in a Google Workspace domain that has
    authorised Nettsoft's service account and in the Exchange simulator (its one service account), and an
    MBN enterprise reached with Nettsoft's partner client (one group member has no subscription). Call
    `register_nettsoft` first."""
    tenant = ONBOARDING_TENANT_ID
    sims.graph.add_tenant(tenant)
    sims.login.set_consent(tenant_id=tenant, refuse=False)
    sims.mbn.add_enterprise(
        ONBOARDING_ENTERPRISE_ID,
        MBN_PARTNER["client_id"],
        MBN_PARTNER["client_secret"],
        ONBOARDING_MBN_USER["username"],
        ONBOARDING_MBN_USER["password"],
    )
    sims.google.add_user(ONBOARDING_GOOGLE_ADMIN, "Administrator", admin=True)
    sims.google.authorise_client(ONBOARDING_DOMAIN, SERVICE_ACCOUNT_CLIENT_ID, GOOGLE_SCOPES)
    sims.google.add_user(UNDELEGATED_GOOGLE_ADMIN, "Administrator", admin=True)
    sims.google.add_group("alle@ikke-delegert.no", [UNDELEGATED_GOOGLE_ADMIN])
    monday = today - dt.timedelta(days=today.weekday())
    people = []
    for index, (user_id, local, name, msisdn) in enumerate(ONBOARDING_PEOPLE):
        email = f"{local}@{ONBOARDING_DOMAIN}"
        sims.graph.add_user(tenant, user_id, email, name)
        sims.google.add_user(email, name)
        sims.ews.add_mailbox(email, name)
        if msisdn:
            sims.mbn.add_subscriber(ONBOARDING_ENTERPRISE_ID, msisdn, email, name)
        for event in _onboarding_events(monday, index):
            sims.graph.put_event(user_id, event)
            sims.google.put_event(email, event)
            sims.ews.put_event(email, event)
        people.append({"id": user_id, "email": email, "name": name, "msisdn": msisdn})
    groups = []
    for group_id, name, mail, members in ONBOARDING_GROUPS:
        sims.graph.add_group(tenant, group_id, name, [ONBOARDING_PEOPLE[i][0] for i in members], mail=mail)
        groups.append({"id": group_id, "name": name, "mail": mail, "members": len(members)})
    member_mails = [f"{ONBOARDING_PEOPLE[i][1]}@{ONBOARDING_DOMAIN}" for i in ONBOARDING_GROUPS[0][3]]
    sims.google.add_group(ONBOARDING_GOOGLE_GROUP, member_mails)
    sims.ews.add_group(ONBOARDING_GOOGLE_GROUP, member_mails, name="Kalender Push-brukere")
    return {
        "tenant_id": tenant,
        "groups": groups,
        "people": people,
        "mbn": {"enterprise_id": ONBOARDING_ENTERPRISE_ID, **ONBOARDING_MBN_USER},
        "google": {"admin_subject": ONBOARDING_GOOGLE_ADMIN, "group": ONBOARDING_GOOGLE_GROUP},
        "ews": dict(
            zip(("username", "password"), sims.ews.credentials(), strict=True),
            endpoint=sims.ews_url,
            group=ONBOARDING_GOOGLE_GROUP,
        ),
    }


def _onboarding_events(monday: dt.date, index: int) -> list[SimEvent]:
    """A few appointments per person this week and next, the same in every calendar system."""
    events = []
    for week in (0, 1):
        day = monday + dt.timedelta(days=7 * week + index % 5)
        events.append(SimEvent(f"fh-{index}-{week}-a", "Kundemøte &Eks", _at(day, 9 + index % 3), _at(day, 11)))
        later = day + dt.timedelta(days=1)
        events.append(SimEvent(f"fh-{index}-{week}-b", "Kurs &For", _at(later, 12), _at(later, 15)))
    return events
