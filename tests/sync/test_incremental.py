"""Incremental reads against the simulators, for Graph (calendarView/delta), Google (syncToken) and EWS
(SyncFolderItems): a sweep with no change reads only the changes and calls MBN not at all; a changed, added or
deleted event reaches MBN from the stored state; an expired cursor reads that calendar in full again; the daily
full read comes at the user's own hour; no subject is ever stored."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.db import models
from django.test.utils import override_settings

from customers.models import ServiceUser
from devtools import demo
from sync import jobs, pipeline
from sync.models import CalendarUser
from sync.rules import Event, compute_absences
from sync.services import catalogue_from_database, rule_settings_for
from tests.factories import make_customer

simulators = pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db
OSLO = ZoneInfo("Europe/Oslo")
SECRET = "Hemmelig oppkjøp av Ørnulf AS"
KINDS = ("graph", "google", "ews")


@pytest.fixture
def sims():
    with (
        simulators.Simulators.start() as running,
        override_settings(
            MICROSOFT_LOGIN_BASE_URL=running.login_url,
            GRAPH_BASE_URL=running.graph_url,
            MBN_BASE_URL=running.mbn_url,
            MICROSOFT_LOGIN_CA_BUNDLE=running.ca_path,
            GOOGLE_TOKEN_URL=running.google.token_url,
            GOOGLE_CALENDAR_BASE_URL=running.google.calendar_url,
            GOOGLE_DIRECTORY_BASE_URL=running.google.directory_url,
        ),
    ):
        yield running


def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=OSLO)


NOW = local(7, 6)  # Monday 7 December 2026


def calendar() -> list[Event]:
    return [
        Event("trip", local(8, 9), local(8, 17), subject=f"{SECRET} &For"),
        Event("ferie", dt.date(2026, 12, 10), dt.date(2026, 12, 12), all_day=True, subject="&-Ferie", show_as="free"),
        Event("lunsj", local(7, 11), local(7, 11, 30), subject="Lunsj &Ute", show_as="free"),
        Event("mote", local(9, 13), local(9, 14), subject=f"{SECRET} styremøte"),
    ]


def wire(sims, kind: str) -> tuple[list[ServiceUser], list[int]]:
    customer = make_customer(name="Fjord Elektro AS")
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@fjord.no", name=f"Ansatt {i}", msisdn=f"+4791{i:06d}"
        )
        for i in range(2)
    ]
    if kind == "graph":
        source = demo.wire_customer(
            sims=sims, customer=customer, users=users, tenant_id="t-1", enterprise_id="fjord", mbn_rate_per_second=1000
        )
    elif kind == "google":
        source = demo.wire_google_customer(
            sims=sims, customer=customer, users=users, enterprise_id="fjord", mbn_rate_per_second=1000
        )
    else:
        source = demo.wire_ews_customer(
            sims=sims, customer=customer, users=users, enterprise_id="fjord", mbn_rate_per_second=1000
        )
    jobs.refresh_group(source=source)
    for user in users:
        demo.put_events(sims, kind, user, calendar())
    return users, list(CalendarUser.objects.filter(source=source).order_by("pk").values_list("pk", flat=True))


def mbn_state(sims, user):
    return sorted(
        (a["reason"], dt.datetime.fromisoformat(a["start"]), dt.datetime.fromisoformat(a["end"]), a["diversion"])
        for a in sims.mbn.absences("fjord", user.msisdn)
    )


def engine_state(user, events, now):
    start, end = pipeline.sync_window(now)
    rules = rule_settings_for(customer_settings=user.customer.settings, service_user=user)
    absences = compute_absences(
        settings=rules, window_start=start, window_end=end, events=events, catalogue=catalogue_from_database()
    )
    return sorted((a.mbn_reason, a.start, a.end, "voicemail" if a.divert else "none") for a in absences)


def calendar_reads(sims, kind: str) -> dict[str, int]:
    """What the calendar service served since the last reset, by kind of read."""
    if kind == "ews":
        return {
            op: sims.ews.operation_count(op) for op in ("SyncFolderItems", "FindItem") if sims.ews.operation_count(op)
        }
    return getattr(sims, kind).calendar_reads()


def reset_reads(sims, kind: str) -> None:
    if kind == "ews":
        sims.ews.reset_counters()
    else:
        getattr(sims, kind).reset_calendar_reads()


INCREMENTAL = {"graph": {"delta"}, "google": {"sync"}, "ews": {"SyncFolderItems"}}
FULL = {"graph": "delta_initial", "google": "full", "ews": "FindItem"}


def put(sims, kind: str, user: ServiceUser, event: Event) -> None:
    demo.put_events(sims, kind, user, [event])


def delete(sims, kind: str, user: ServiceUser, event_id: str) -> None:
    if kind == "graph":
        sims.graph.delete_event(demo.graph_user_id(user), event_id)
    else:
        getattr(sims, kind).delete_event(user.email, event_id)


def expire(sims, kind: str) -> None:
    {"graph": lambda: sims.graph.expire_delta_tokens(), "google": sims.google.expire_sync_tokens}.get(
        kind, sims.ews.expire_sync_states
    )()


@pytest.mark.parametrize("kind", KINDS)
def test_a_sweep_without_change_reads_only_changes_and_calls_mbn_not_at_all(sims, kind):
    users, ids = wire(sims, kind)
    results = pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    assert not [r.error for r in results if r.error]
    for user in users:
        assert mbn_state(sims, user) == engine_state(user, calendar(), NOW)
    assert all(CalendarUser.objects.get(pk=pk).delta_cursor for pk in ids)

    reset_reads(sims, kind)
    mbn_before = sims.requests("mbn")
    results = pipeline.sync_users(calendar_user_ids=ids, now=NOW + dt.timedelta(minutes=5))
    assert sims.requests("mbn") == mbn_before
    assert sum(r.mbn_requests for r in results) == 0
    reads = calendar_reads(sims, kind)
    assert set(reads) == INCREMENTAL[kind], reads
    assert sum(reads.values()) == len(ids)  # one small request per user, nothing re-read
    for user in users:
        assert mbn_state(sims, user) == engine_state(user, calendar(), NOW)


@pytest.mark.parametrize("kind", KINDS)
def test_changed_added_and_deleted_events_reach_mbn_from_the_stored_state(sims, kind):
    users, ids = wire(sims, kind)
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    kari = users[0]
    later = NOW + dt.timedelta(minutes=5)
    moved = Event("trip", local(8, 9), local(8, 12), subject=f"{SECRET} &For")
    added = Event("nytt", local(10, 10), local(10, 11), subject="Kunde &Eks-")
    put(sims, kind, kari, moved)
    put(sims, kind, kari, added)
    delete(sims, kind, kari, "mote")
    reset_reads(sims, kind)
    results = pipeline.sync_users(calendar_user_ids=ids, now=later)
    assert not [r.error for r in results if r.error]
    expected = [moved if e.id == "trip" else e for e in calendar() if e.id != "mote"] + [added]
    assert mbn_state(sims, kari) == engine_state(kari, expected, later)
    assert mbn_state(sims, users[1]) == engine_state(users[1], calendar(), NOW)  # untouched
    reads = calendar_reads(sims, kind)
    if kind == "ews":  # SyncFolderItems says what changed; the changed mailbox alone is read again
        assert reads == {"SyncFolderItems": 2, "FindItem": 1}
    else:
        assert set(reads) == INCREMENTAL[kind]

    # and the next sweep is quiet again
    mbn_before = sims.requests("mbn")
    pipeline.sync_users(calendar_user_ids=ids, now=later + dt.timedelta(minutes=5))
    assert sims.requests("mbn") == mbn_before


@pytest.mark.parametrize("kind", KINDS)
def test_an_expired_cursor_reads_that_calendar_in_full_and_stays_correct(sims, kind):
    users, ids = wire(sims, kind)
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    kari = users[0]
    changed = Event("lunsj", local(7, 12), local(7, 13), subject="Lunsj &Ute")
    put(sims, kind, kari, changed)
    expire(sims, kind)
    reset_reads(sims, kind)
    later = NOW + dt.timedelta(minutes=5)
    results = pipeline.sync_users(calendar_user_ids=ids, now=later)
    assert not [r.error for r in results if r.error]
    expected = [changed if e.id == "lunsj" else e for e in calendar()]
    assert mbn_state(sims, kari) == engine_state(kari, expected, later)
    assert mbn_state(sims, users[1]) == engine_state(users[1], calendar(), NOW)
    assert calendar_reads(sims, kind).get(FULL[kind]) == len(ids)
    # new cursors work
    reset_reads(sims, kind)
    pipeline.sync_users(calendar_user_ids=ids, now=later + dt.timedelta(minutes=5))
    assert set(calendar_reads(sims, kind)) == INCREMENTAL[kind]


def test_the_daily_full_read_comes_once_a_day_at_the_users_own_time(sims):
    users, ids = wire(sims, "graph")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    first = CalendarUser.objects.get(pk=ids[0])
    assert first.full_read_at == NOW
    due = [
        NOW + dt.timedelta(minutes=m)
        for m in range(0, 48 * 60, 5)
        if pipeline.full_read_due(calendar_user_id=ids[0], full_read_at=NOW, now=NOW + dt.timedelta(minutes=m))
    ]
    gap = due[0] - NOW
    assert dt.timedelta(hours=12) <= gap < dt.timedelta(hours=36)
    slots = {
        pipeline.full_read_due(calendar_user_id=pk, full_read_at=NOW, now=NOW + dt.timedelta(hours=20))
        for pk in range(1, 200)
    }
    assert slots == {True, False}, "users' full reads are spread over the day"

    # at that moment the sweep reads the calendar in full, and the horizon moves with it
    sims.graph.reset_calendar_reads()
    pipeline.sync_users(calendar_user_ids=[ids[0]], now=due[0])
    assert sims.graph.calendar_reads() == {"delta_initial": 1}
    assert CalendarUser.objects.get(pk=ids[0]).full_read_at == due[0]
    still_ahead = [absence for absence in mbn_state(sims, users[0]) if absence[2] > due[0]]  # past ones stay
    assert still_ahead == engine_state(users[0], calendar(), due[0])


def test_a_settings_change_recomputes_from_the_stored_state_without_rereading(sims):
    users, ids = wire(sims, "graph")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    settings = users[0].customer.settings
    settings.divert_by_default = False
    settings.save()
    sims.graph.reset_calendar_reads()
    later = NOW + dt.timedelta(minutes=5)
    pipeline.sync_users(calendar_user_ids=ids, now=later)
    assert set(sims.graph.calendar_reads()) == {"delta"}
    for user in users:
        user.refresh_from_db()
        assert mbn_state(sims, user) == engine_state(user, calendar(), later)
    assert any(division == "none" for *_rest, division in mbn_state(sims, users[0]))


@pytest.mark.parametrize("kind", KINDS)
def test_subjects_are_never_stored(sims, kind):
    users, ids = wire(sims, kind)
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    put(sims, kind, users[0], Event("trip", local(8, 10), local(8, 12), subject=f"{SECRET} &For"))
    pipeline.sync_users(calendar_user_ids=ids, now=NOW + dt.timedelta(minutes=5))
    assert CalendarUser.objects.get(pk=ids[0]).event_state["e"]
    for model in apps.get_models():
        fields = [f.name for f in model._meta.get_fields() if isinstance(f, models.TextField | models.CharField)]
        json_fields = [f.name for f in model._meta.get_fields() if isinstance(f, models.JSONField)]
        for row in model.objects.values(*fields, *json_fields):
            text = repr(row)
            assert "Ørnulf" not in text and "styremøte" not in text, model.__name__


def test_a_failed_push_is_pushed_again_although_the_calendar_did_not_change_again(sims):
    users, ids = wire(sims, "graph")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    kari = users[0]
    put(sims, "graph", kari, Event("nytt", local(10, 10), local(10, 11), subject="Kunde &Eks"))
    sims.set_faults("mbn", rate=1.0, kinds=("503",))
    with pytest.raises(pipeline.RetryLater):
        pipeline.sync_users(calendar_user_ids=ids, now=NOW + dt.timedelta(minutes=5))
    sims.set_faults("mbn", rate=0)
    later = NOW + dt.timedelta(minutes=10)
    pipeline.sync_users(calendar_user_ids=ids, now=later)
    expected = [*calendar(), Event("nytt", local(10, 10), local(10, 11), subject="Kunde &Eks")]
    assert mbn_state(sims, kari) == engine_state(kari, expected, later)


def test_a_change_made_while_mbn_was_disconnected_reaches_mbn_once_it_is_connected_again(sims):
    from django.utils import timezone

    from sync.models import MbnConnection

    users, ids = wire(sims, "graph")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    kari = users[0]
    MbnConnection.objects.filter(customer=kari.customer).update(removed_at=timezone.now())
    trip = Event("tur", local(10, 8), local(10, 16), subject="Messe &For")
    put(sims, "graph", kari, trip)
    pipeline.sync_users(calendar_user_ids=ids, now=NOW + dt.timedelta(minutes=5))  # read, nothing to push to
    MbnConnection.objects.filter(customer=kari.customer).update(removed_at=None)

    pipeline.sync_users(calendar_user_ids=ids, now=NOW + dt.timedelta(minutes=10))  # no calendar change since

    assert mbn_state(sims, kari) == engine_state(kari, [*calendar(), trip], NOW + dt.timedelta(minutes=10))


def test_stored_events_that_cannot_be_read_are_never_taken_for_an_empty_calendar(sims):
    users, ids = wire(sims, "graph")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    kari = users[0]
    calendar_user = CalendarUser.objects.get(pk=ids[0])
    damaged = dict(calendar_user.event_state)
    damaged["e"] = "not a list of events"
    CalendarUser.objects.filter(pk=ids[0]).update(event_state=damaged)
    put(sims, "graph", kari, Event("nytt", local(10, 10), local(10, 11), subject="Kunde &Eks-"))
    before = mbn_state(sims, kari)

    pipeline.sync_users(calendar_user_ids=ids, now=NOW + dt.timedelta(minutes=5))

    assert mbn_state(sims, kari) == before  # nothing deleted on a guess
    assert CalendarUser.objects.get(pk=ids[0]).delta_cursor == ""  # the next sync reads the calendar in full
