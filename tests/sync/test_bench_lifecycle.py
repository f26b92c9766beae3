"""`bench_lifecycle --json` (the fixed interface of issue 16): the lifecycle against the simulators leaves no
absence of ours on MBN and no subscription or channel for anyone stopped, keeps the manual absences, queues no
sync for a stopped user's webhook, purges the secrets, and removes what it made."""

import io
import json

import pytest
from django.core.management import call_command
from django_q.models import OrmQ, Schedule

from customers.models import Customer, ServiceUser

pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_bench_lifecycle_prints_the_fixed_json_with_nothing_left() -> None:
    schedules = Schedule.objects.count()
    out = io.StringIO()
    call_command("bench_lifecycle", "--json", stdout=out, stderr=io.StringIO())

    figures = json.loads(out.getvalue())
    wall = figures.pop("wall_s")
    assert figures == {
        "providers": {"graph": 1, "ews": 1, "google": 1},
        "leavers": 3,
        "leaver_future_absences_left": 0,
        "leaver_subscriptions_left": 0,
        "manual_absences_before": 9,
        "manual_absences_after": 9,
        "ended_customers": 3,
        "ended_future_absences_left": 0,
        "ended_subscriptions_left": 0,
        "webhook_syncs_for_stopped_users": 0,
        "purged_secrets_left": 0,
    }
    assert 0 < wall < 300
    assert (Customer.objects.count(), ServiceUser.objects.count(), OrmQ.objects.count()) == (0, 0, 0)
    assert Schedule.objects.count() == schedules
