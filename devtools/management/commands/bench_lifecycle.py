"""`bench_lifecycle --json`: the service lifecycle of issue 16 end to end against the simulators.

A Graph, an Exchange (EWS) and a Google Workspace customer, each with `--users` users pushed to MBN and a manual
absence on every user's MBN number; one user per customer leaves the activation group (one group refresh); a
webhook for each stopped user is posted to the app; then every customer's subscription ends (the nightly job)
and, PURGE_AFTER_DAYS later, the purge runs. Prints one JSON object: {"providers", "leavers",
"leaver_future_absences_left", "leaver_subscriptions_left", "manual_absences_before", "manual_absences_after",
"ended_customers", "ended_future_absences_left", "ended_subscriptions_left", "webhook_syncs_for_stopped_users",
"purged_secrets_left", "wall_s"}; every count is read from the simulators' state and the database, not from
what the code says it did. Runs on the current database and deletes what it made.
"""

import contextlib
import datetime as dt
import json
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test.utils import override_settings
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from customers.models import Customer, ServiceUser, Subscription
from customers.services import end_subscriptions_past_effective_end, ensure_customer_settings
from customers.validators import org_numbers_from
from devtools import demo
from devtools.benchmarking import workers
from devtools.benchmarking.fleet import simulator_settings
from sync import jobs
from sync.models import CalendarSource, CalendarUser, MbnConnection
from sync.purge import purge_ended_customers
from sync.reconcile import EXTERNAL_REF_PREFIX
from sync.rules import Event

PROVIDERS = ("graph", "ews", "google")
OSLO = ZoneInfo("Europe/Oslo")


def _answered(sims) -> None:  # type: ignore[no-untyped-def]
    """Wait until the app has answered every notification the simulators queued. With the in-memory test
    database the app's request threads share this thread's connection, so this thread must not query while
    a webhook runs (a concurrent request's transaction could swallow this thread's writes)."""
    if not (sims.graph.flush_notifications(timeout=30) and sims.google.flush_notifications(timeout=30)):
        raise CommandError("the simulators' notifications were not answered within 30 seconds")


class Command(BaseCommand):
    help = "Runs the service lifecycle (leavers, an ended customer, the purge) against the simulators (JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=3, help="users per customer (one of them leaves)")
        parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        from devtools.simulators import Simulators

        if options["users"] < 2:
            raise CommandError("--users must be at least 2: one leaves, the others stay")
        started = time.perf_counter()
        with ExitStack() as stack:
            sims = stack.enter_context(Simulators.start())
            sims.graph.allow_http_webhooks_on_loopback()  # the app is served over plain http on 127.0.0.1
            app_url = stack.enter_context(workers.serve_app())
            stack.enter_context(simulator_settings(sims, PUBLIC_BASE_URL=app_url))
            # the benchmark's own secrets, deleted with its customers (production requires a real key)
            stack.enter_context(
                override_settings(CREDENTIALS_KEY=django_settings.CREDENTIALS_KEY or Fernet.generate_key().decode())
            )
            result = self._run(sims, app_url, options["users"])
        result["wall_s"] = round(time.perf_counter() - started, 2)
        self.stdout.write(json.dumps(result))

    def _run(self, sims, app_url: str, per_customer: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        first_task = OrmQ.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        first_schedule = Schedule.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        built: list[tuple[str, Customer, CalendarSource, list[ServiceUser]]] = []
        try:
            for kind in PROVIDERS:
                customer, users = self._build(kind, per_customer)
                wire: Any = demo.wire_customer if kind == "graph" else WIRE[kind]
                extra: dict[str, Any] = {"tenant_id": f"life-{customer.pk:08d}"} if kind == "graph" else {}
                source = wire(sims=sims, customer=customer, users=users, enterprise_id=f"life-{customer.pk}", **extra)
                built.append((kind, customer, source, users))
            tomorrow = (
                (timezone.now() + dt.timedelta(days=1)).astimezone(OSLO).replace(minute=0, second=0, microsecond=0)
            )
            for kind, customer, source, users in built:
                jobs.refresh_group(source=source)
                jobs.ensure_subscriptions(source=source)
                _answered(sims)  # a new Google channel posts its "sync" message
                for user in users:
                    demo.put_events(
                        sims,
                        kind,
                        user,
                        [
                            Event("a", tomorrow.replace(hour=9), tomorrow.replace(hour=10), subject="Møte"),
                            Event("b", tomorrow.replace(hour=14), tomorrow.replace(hour=15), subject="Kunde &Eks"),
                        ],
                    )
                    sims.mbn.put_manual_absence(
                        f"life-{customer.pk}",
                        user.msisdn,
                        "Lunch",
                        tomorrow.replace(hour=11).isoformat(),
                        tomorrow.replace(hour=12).isoformat(),
                    )
                _answered(sims)  # the change notifications of the events just put
                jobs.sweep(source=source)
            demo.run_queued_jobs()
            everyone = [(customer, user) for _kind, customer, _source, users in built for user in users]
            manual_before = sum(len(self._absences(sims, customer, user, ours=False)) for customer, user in everyone)
            pushed = sum(len(self._absences(sims, customer, user, ours=True)) for customer, user in everyone)
            if not pushed:
                raise CommandError("nothing reached MBN before the lifecycle started; the simulators are not wired")

            # one user per customer leaves the activation group: one group refresh each
            leavers = [(kind, customer, source, users[0]) for kind, customer, source, users in built]
            leaver_calendars = list(CalendarUser.objects.filter(service_user__in=[u for *_rest, u in leavers]))
            leaver_watches = {c.subscription_id.split("|")[0] for c in leaver_calendars if c.subscription_id}
            for kind, _customer, source, users in built:
                self._remove_from_group(sims, kind, source, users[0], users[1:])
                jobs.refresh_group(source=source)
            demo.run_queued_jobs()
            leaver_left = sum(
                len(self._absences(sims, customer, user, ours=True)) for _k, customer, _s, user in leavers
            )
            leaver_watch_left = len(leaver_watches & self._watches(sims))

            # a notification for each stopped user, with the subscription and secret they had
            seen_task = OrmQ.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            for calendar in leaver_calendars:
                self._post_webhook(app_url, calendar)
            stopped_ids = {calendar.pk for calendar in leaver_calendars}
            webhook_syncs = sum(
                1 for task in OrmQ.objects.filter(pk__gt=seen_task) if set((task.args() or [[]])[0] or []) & stopped_ids
            )
            OrmQ.objects.filter(pk__gt=seen_task).delete()

            # every customer's subscription ends: the nightly job
            all_watches = {
                c.subscription_id.split("|")[0]
                for c in CalendarUser.objects.filter(source__in=[s for _k, _c, s, _u in built])
                if c.subscription_id
            }
            Subscription.objects.filter(customer__in=[c for _k, c, _s, _u in built]).update(
                status=Subscription.Status.NOTICE_GIVEN, notice_received=dt.date(2020, 1, 1)
            )
            end_subscriptions_past_effective_end(today=timezone.localdate())
            demo.run_queued_jobs()
            ended = [
                c for c in Customer.objects.filter(pk__in=[c.pk for _k, c, _s, _u in built], ended_at__isnull=False)
            ]
            ended_left = sum(len(self._absences(sims, customer, user, ours=True)) for customer, user in everyone)
            ended_watch_left = len(all_watches & self._watches(sims))
            manual_after = sum(len(self._absences(sims, customer, user, ours=False)) for customer, user in everyone)

            # PURGE_AFTER_DAYS later
            Customer.objects.filter(pk__in=[c.pk for c in ended]).update(
                ended_at=timezone.now() - dt.timedelta(days=django_settings.PURGE_AFTER_DAYS + 1)
            )
            purge_ended_customers()
            ids = [c.pk for _k, c, _s, _u in built]
            secrets_left = (
                CalendarSource.objects.filter(customer_id__in=ids).exclude(secret_encrypted="").count()
                + MbnConnection.objects.filter(customer_id__in=ids).exclude(client_secret_encrypted="").count()
                + MbnConnection.objects.filter(customer_id__in=ids).exclude(password_encrypted="").count()
            )
        finally:
            ids = [c.pk for _k, c, _s, _u in built]
            Subscription.objects.filter(customer_id__in=ids).delete()
            Customer.objects.filter(pk__in=ids).delete()
            OrmQ.objects.filter(pk__gt=first_task).delete()
            Schedule.objects.filter(pk__gt=first_schedule).delete()
        return {
            "providers": {kind: 1 for kind, *_rest in built},
            "leavers": len(leavers),
            "leaver_future_absences_left": leaver_left,
            "leaver_subscriptions_left": leaver_watch_left,
            "manual_absences_before": manual_before,
            "manual_absences_after": manual_after,
            "ended_customers": len(ended),
            "ended_future_absences_left": ended_left,
            "ended_subscriptions_left": ended_watch_left,
            "webhook_syncs_for_stopped_users": webhook_syncs,
            "purged_secrets_left": secrets_left,
        }

    def _build(self, kind: str, count: int) -> tuple[Customer, list[ServiceUser]]:
        taken = set(Customer.objects.values_list("org_number", flat=True))
        org_number = next(n for n in org_numbers_from(82000000) if n not in taken)
        customer = Customer(
            name=f"Benchmark Lifecycle {kind} AS",
            org_number=org_number,
            address_line="Testveien 1",
            postal_code="0150",
            city="Oslo",
            invoice_email="bench@bench.example",
        )
        customer.save()
        ensure_customer_settings(customer=customer)
        Subscription(customer=customer, term_months=0, signed_on=dt.date(2020, 1, 1)).save()
        users = [
            ServiceUser.objects.create(
                customer=customer,
                email=f"{kind}{i}@life{customer.pk}.example",
                name=f"Bruker {i}",
                msisdn=f"+479{customer.pk % 100:02d}{i:05d}",
            )
            for i in range(count)
        ]
        return customer, users

    @staticmethod
    def _absences(sims, customer: Customer, user: ServiceUser, *, ours: bool) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
        """Ours that have not ended yet, or the manual ones: as the MBN simulator holds them."""
        now = timezone.now()
        held = sims.mbn.absences(f"life-{customer.pk}", user.msisdn)
        if not ours:
            return [a for a in held if not (a.get("external_ref") or "").startswith(EXTERNAL_REF_PREFIX)]
        return [
            a
            for a in held
            if (a.get("external_ref") or "").startswith(EXTERNAL_REF_PREFIX)
            and dt.datetime.fromisoformat(a["end"]) > now
        ]

    @staticmethod
    def _watches(sims) -> set[str]:  # type: ignore[no-untyped-def]
        """Graph subscriptions and Google channels the simulators hold live."""
        return {sub["id"] for sub in sims.graph.subscriptions()} | {ch["id"] for ch in sims.google.channels()}

    @staticmethod
    def _remove_from_group(
        sims, kind: str, source: CalendarSource, leaver: ServiceUser, stay: list[ServiceUser]
    ) -> None:  # type: ignore[no-untyped-def]
        if kind == "graph":
            sims.graph.add_group(
                source.tenant_id, source.activation_group, "Kalender Push", [demo.graph_user_id(u) for u in stay]
            )
        else:
            getattr(sims, kind).add_group(source.activation_group, [u.email for u in stay])

    @staticmethod
    def _post_webhook(app_url: str, calendar: CalendarUser) -> None:
        """What Graph or Google would post for the user's old subscription or channel (Exchange has none)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        if calendar.source.kind == CalendarSource.Kind.GRAPH:
            body = {
                "value": [
                    {
                        "subscriptionId": calendar.subscription_id,
                        "clientState": calendar.client_state,
                        "changeType": "updated",
                    }
                ]
            }
            request = urllib.request.Request(
                app_url + reverse("sync:graph_webhook"),
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
        elif calendar.source.kind == CalendarSource.Kind.GOOGLE:
            request = urllib.request.Request(
                app_url + reverse("sync:google_webhook"),
                data=b"",
                headers={
                    "X-Goog-Channel-ID": calendar.subscription_id.split("|")[0],
                    "X-Goog-Channel-Token": calendar.client_state,
                    "X-Goog-Resource-State": "exists",
                },
                method="POST",
            )
        else:
            return
        with contextlib.suppress(urllib.error.HTTPError):  # refused (403): nothing queued is what is measured
            opener.open(request, timeout=10).close()


WIRE = {"ews": demo.wire_ews_customer, "google": demo.wire_google_customer}
