"""`demo_sync --env-file FILE`: the simulators for `make run`, wired to the demo customers, with a living day.

Starts the login, Graph and MBN simulators; gives every demo customer a Microsoft 365 tenant with its
users and two weeks of appointments, and an MBN enterprise with its subscribers; registers Nettsoft's
multi-tenant app (a certificate whose key is written under DEMO_STATE_DIR), service account and MBN partner
client, and scripts the tenant, groups, calendars and enterprise of the customer still to be connected
through the portal; writes the simulators' addresses and Nettsoft's settings to FILE (the web server and
the q2 cluster read them); subscribes to change notifications;
syncs once; then changes a few appointments every `--interval` seconds, so absences move in admin and on
the simulated MBN within seconds. Runs until Ctrl-C.
"""

import datetime as dt
import random
import signal
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.test.utils import override_settings
from django.utils import timezone

from customers.models import Customer
from devtools import demo
from sync import jobs, pipeline
from sync.models import CalendarUser


class Command(BaseCommand):
    help = "Runs the loopback simulators for the demo, wired to the demo customers, with changing calendars."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--env-file", type=Path, required=True, help="where to write the simulators' URLs")
        parser.add_argument("--interval", type=float, default=20.0, help="seconds between calendar changes")

    def handle(self, *args: Any, **options: Any) -> None:
        from devtools.simulators import Simulators
        from devtools.simulators.demo import load_onboarding, register_nettsoft

        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop at once, like Ctrl-C
        with Simulators.start() as sims:
            # `make run` serves the webhooks with Django's plain-http server on 127.0.0.1: the simulated Graph
            # accepts that only with its lab switch (real Graph, and the simulator by default, want https).
            sims.graph.allow_http_webhooks_on_loopback()
            urls = sims.app_settings()
            urls.update(register_nettsoft(sims, Path(settings.DEMO_STATE_DIR)))
            onboarding = load_onboarding(sims, timezone.localdate())
            self._consent_again(sims)
            with override_settings(**urls):
                rng = random.Random(2026)
                users = self._wire(sims, rng)
                options["env_file"].parent.mkdir(parents=True, exist_ok=True)
                options["env_file"].write_text("".join(f"{key}={value}\n" for key, value in urls.items()))
                self.stdout.write(f"Simulators: Graph {sims.graph_url}, MBN {sims.mbn_url} ({len(users)} users)")
                groups = ", ".join(group["name"] for group in onboarding["groups"])
                self.stdout.write(
                    f"To connect in the portal: Microsoft 365 tenant {onboarding['tenant_id']} (groups: {groups}); "
                    f"MBN enterprise {onboarding['mbn']['enterprise_id']}, API user {onboarding['mbn']['username']}, "
                    f"password {onboarding['mbn']['password']}"
                )
                self._first_sync()
                try:
                    while True:
                        time.sleep(options["interval"])
                        self._change_something(sims, rng, users)
                except KeyboardInterrupt:
                    self.stdout.write("Simulators stopped.")

    def _wire(self, sims, rng: random.Random) -> list[tuple[str, Any]]:  # type: ignore[no-untyped-def]
        """One demo customer per calendar system: Microsoft 365, Exchange on-premises, Google Workspace."""
        everyone: list[tuple[str, Any]] = []
        now = timezone.now()
        kinds = ("graph", "ews", "google")
        for index, customer in enumerate(Customer.objects.order_by("customer_number")):
            users = list(customer.service_users.filter(active=True).order_by("pk"))
            if not users:
                continue
            kind = kinds[index % len(kinds)]
            enterprise = f"demo-{customer.customer_number}"
            if kind == "graph":
                demo.wire_customer(
                    sims=sims,
                    customer=customer,
                    users=users,
                    tenant_id=f"demo-tenant-{index:04d}",
                    enterprise_id=enterprise,
                )
            elif kind == "ews":
                demo.wire_ews_customer(sims=sims, customer=customer, users=users, enterprise_id=enterprise)
            else:
                demo.wire_google_customer(sims=sims, customer=customer, users=users, enterprise_id=enterprise)
            for user in users:
                events = demo.scripted_events(rng=rng, start=now, days=14, count=12, prefix=f"{user.pk}-")
                demo.put_events(sims, kind, user, demo.as_provider_can_hold(kind, events))
                everyone.append((kind, user))
        return everyone

    def _consent_again(self, sims) -> None:  # type: ignore[no-untyped-def]
        """The simulators forget consents when they stop: a customer connected by consent in an earlier run of
        the demo consents again, so its source keeps working."""
        from devtools.simulators.demo import NETTSOFT_CLIENT_ID
        from sync.models import CalendarSource

        consented = CalendarSource.objects.filter(kind=CalendarSource.Kind.GRAPH, uses_nettsoft_app=True)
        for tenant_id in consented.values_list("tenant_id", flat=True).distinct():
            sims.graph.add_tenant(tenant_id)
            sims.login.grant_consent(tenant_id, NETTSOFT_CLIENT_ID)

    def _first_sync(self) -> None:
        from sync.models import CalendarSource

        for source in CalendarSource.objects.filter(active=True).select_related("customer"):
            jobs.refresh_group(source=source)
            for attempt in range(30):  # the web server may still be starting: its webhook answers the handshake
                try:
                    jobs.ensure_subscriptions(source=source)
                    break
                except Exception as error:
                    if attempt == 29:
                        self.stderr.write(f"No change notifications for {source}: {error}")
                    time.sleep(1)
            ids = list(CalendarUser.objects.filter(source=source).values_list("pk", flat=True))
            for chunk in jobs._chunks(ids):
                self._sync(chunk)
        self.stdout.write("Demo calendars synced to the simulated MBN; changes follow every few seconds.")

    def _sync(self, ids: list[int]) -> None:
        for _attempt in range(20):
            try:
                pipeline.sync_users(calendar_user_ids=ids)
                return
            except pipeline.RetryLater as error:
                ids = error.user_ids or ids
                time.sleep(min(error.retry_after or 1, 5))

    def _change_something(self, sims, rng: random.Random, users: list[tuple[str, Any]]) -> None:  # type: ignore[no-untyped-def]
        """Add an appointment for a random user; Graph and Google notify the webhooks, Exchange waits for the sweep."""
        kind, user = rng.choice(users)
        start = timezone.now() + dt.timedelta(hours=rng.randrange(1, 72))
        prefix = f"{user.pk}-live-{time.time_ns()}-"
        events = demo.scripted_events(rng=rng, start=start, days=1, count=1, prefix=prefix)
        demo.put_events(sims, kind, user, demo.as_provider_can_hold(kind, events))
