"""Near-term first: a customer's onboarding pushes what starts within 24 h, for all its users, before the rest."""

import datetime as dt
import io
import json
import time
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from sync import reconcile
from sync.pipeline import URGENT_HOLD_SECONDS, _Pacer
from sync.rules import Absence
from sync.services import FIRST_DAY_PASS_USERS, queue_syncs, sync_passes
from tests.factories import make_calendar_source, make_customer, make_subscription, make_users

OSLO = ZoneInfo("Europe/Oslo")
NOW = dt.datetime(2026, 3, 2, 8, 0, tzinfo=OSLO)


def at(days: float, hours: float = 0) -> dt.datetime:
    return NOW + dt.timedelta(days=days, hours=hours)


def wanted(*spans: tuple[dt.datetime, dt.datetime]) -> list[reconcile.Wanted]:
    return reconcile.wanted_absences(
        user_key=7,
        absences=[
            Absence(start=s, end=e, profile="Møte", mbn_reason="Møte", divert=True, event_ids=("e",)) for s, e in spans
        ],
    )


def held(item: reconcile.Wanted, **changes: object) -> reconcile.Wanted:
    return reconcile.Wanted(**{**item.__dict__, **changes})  # type: ignore[arg-type]


def test_the_first_pass_creates_what_starts_within_a_day_and_makes_every_delete():
    today, tomorrow, next_week = wanted((at(0, 2), at(0, 3)), (at(1, -1), at(1, 1)), (at(7), at(7, 1)))
    gone = held(wanted((at(9), at(9, 1)))[0], external_ref="kp:7:gone")
    todo = reconcile.plan(wanted=[today, tomorrow, next_week], current=[gone])
    first, deferred = reconcile.first(todo, before=at(1))
    assert first.creates == (today, tomorrow)  # tomorrow's starts within 24 h; its end may be later
    assert first.deletes == (gone,) and deferred == ()


def test_a_later_update_waits_unless_it_is_in_the_way_of_what_is_pushed_now():
    near, far, blocking = wanted((at(0, 2), at(0, 3)), (at(5), at(5, 1)), (at(1, 2), at(1, 3)))
    moved_far = held(far, end=at(5, 2))  # MBN holds a longer version: an update, not needed today
    # a held absence that starts inside a near-term create's span must move now, or MBN refuses the create
    early_create = wanted((at(0, 23), at(1, 3)))[0]
    in_the_way = held(blocking, start=at(1, 2), end=at(1, 4))
    todo = reconcile.plan(wanted=[near, far, early_create], current=[moved_far])
    first, deferred = reconcile.first(todo, before=at(1))
    assert first.updates == () and deferred == (moved_far,) and first.creates == (near, early_create)
    todo = reconcile.plan(
        wanted=[near, early_create, held(blocking, external_ref=in_the_way.external_ref)], current=[in_the_way]
    )
    first, deferred = reconcile.first(todo, before=at(1))
    assert [existing for existing, _item in first.updates] == [in_the_way] and deferred == ()


def test_an_urgent_call_holds_the_enterprises_other_calls_back():
    pacer = _Pacer()
    pacer.wait("ent", 1000.0, urgent=True)
    started = time.monotonic()
    pacer.wait("other-enterprise", 1000.0)  # another enterprise is not held
    assert time.monotonic() - started < 0.2
    pacer.wait("ent", 1000.0)
    assert time.monotonic() - started >= URGENT_HOLD_SECONDS * 0.9
    started = time.monotonic()
    pacer.wait("ent", 1000.0)  # nothing urgent any more: at once
    assert time.monotonic() - started < 0.2


@pytest.mark.django_db
def test_a_customers_onboarding_is_queued_near_term_first_for_everyone():
    big, small = make_customer(name="Stor AS"), make_customer(name="Liten AS")
    for customer in (big, small):
        make_subscription(customer)
    big_source = make_calendar_source(big, make_users(big, FIRST_DAY_PASS_USERS + 5))
    small_source = make_calendar_source(small, make_users(small, 3))
    big_ids = sorted(big_source.users.values_list("pk", flat=True))
    small_ids = sorted(small_source.users.values_list("pk", flat=True))

    passes = sync_passes(calendar_user_ids=big_ids + small_ids, batch=20)

    first_day = [ids for ids, near in passes if near]
    assert sorted(pk for ids in first_day for pk in ids) == big_ids  # the big customer's users only
    assert all(near for _ids, near in passes[: len(first_day)]), "every near-term pass before any full sync"
    full = [ids for ids, near in passes if not near]
    assert sorted(pk for ids in full for pk in ids) == sorted(big_ids + small_ids)
    assert all(len(ids) <= 20 and len({pk in big_ids for pk in ids}) == 1 for ids, _near in passes)

    big_source.users.update(last_synced_at=NOW)  # synced once: a sweep is one full pass
    assert all(not near for _ids, near in sync_passes(calendar_user_ids=big_ids, batch=20))


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_onboarding_puts_every_users_first_day_on_mbn_before_anyones_later_absences():
    out = io.StringIO()
    users = FIRST_DAY_PASS_USERS * 2 + 5
    call_command(
        "bench_onboarding",
        *("--users", str(users), "--events-per-user", "12", "--latency-ms", "0", "--concurrency", "1"),
        *("--mbn-rate", "1000", "--json", "--details"),
        stdout=out,
        stderr=io.StringIO(),
    )
    figures = json.loads(out.getvalue())
    assert set(figures) == {"users", "first_day_complete_s", "all_complete_s", "mismatches", "details"}
    assert figures["users"] == users and figures["mismatches"] == 0
    assert 0 < figures["first_day_complete_s"] <= figures["all_complete_s"]
    details = figures["details"]
    assert details["absences_first_day"] > 0 and details["absences"] > details["absences_first_day"]
    assert details["passes"] == {"first_day": 3, "full": 3}
    assert details["later_absences_before_first_day_complete"] == 0  # the first N creates all start within 24 h


@pytest.mark.django_db
def test_queue_syncs_queues_an_onboarding_in_batches_first_day_first_and_a_change_per_user(
    django_capture_on_commit_callbacks,
):
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    customer = make_customer(name="Ny AS")
    make_subscription(customer)
    source = make_calendar_source(customer, make_users(customer, 45))
    ids = sorted(source.users.values_list("pk", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        queue_syncs(calendar_user_ids=ids)

    queued = [SignedPackage.loads(task.payload) for task in OrmQ.objects.order_by("pk")]
    assert [(len(task["args"][0]), task["args"][3:]) for task in queued] == [
        (20, (True,)),
        (20, (True,)),
        (5, (True,)),
        (20, ()),
        (20, ()),
        (5, ()),
    ]
    OrmQ.objects.all().delete()
    source.users.update(last_synced_at=NOW)  # synced once: a change is one sync of that user
    with django_capture_on_commit_callbacks(execute=True):
        queue_syncs(calendar_user_ids=ids[:2])
    assert [SignedPackage.loads(task.payload)["args"] for task in OrmQ.objects.order_by("pk")] == [
        ([ids[0]],),
        ([ids[1]],),
    ]
