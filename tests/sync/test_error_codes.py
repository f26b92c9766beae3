"""Sync errors as codes: every code the pipeline can store has a title and advice in Norwegian, every error
class carries one, and errors recorded before codes existed got theirs from the old substring rules."""

import importlib

import pytest
from django.utils import translation

from sync import mbn, pipeline
from sync.errors import ADVICE, SyncErrorCode, describe, failure_of
from sync.providers import base, ews, google, graph


def _subclasses(root: type) -> list[type]:
    found, todo = [], [root]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("code", list(SyncErrorCode))
def test_every_code_has_a_title_and_advice_in_norwegian(code):
    assert code in ADVICE
    with translation.override("en"):
        english = describe(code)
    with translation.override("nb"):
        norwegian = describe(code)
    assert all(english) and all(norwegian)
    assert norwegian[0] != english[0], f"{code}: the title has no Norwegian translation"
    assert norwegian[1] != english[1], f"{code}: the advice has no Norwegian translation"


def test_every_provider_and_mbn_error_class_carries_a_code_with_advice():
    assert {ews.__name__, google.__name__, graph.__name__}  # loaded: their subclasses count too
    classes = _subclasses(base.ProviderError) + _subclasses(mbn.MbnError)
    assert len(classes) >= 13
    for cls in classes:
        assert cls.default_code in ADVICE, cls


@pytest.mark.parametrize(
    ("error", "code", "params"),
    [
        (base.PermissionMissing("no Calendars.Read", permission="Calendars.Read"), "permission_missing", {}),
        (base.Throttled("slow down", retry_after=3.0), "throttled", {"retry_after": 3.0}),
        (base.TemporaryError("503"), "service_unavailable", {}),
        (base.NotFound("no group"), "not_found", {}),
        (mbn.MbnConflict("409", server_message="overlap"), "mbn_conflict_manual_absence", {}),
        (mbn.MbnBadRequest("400", code="invalid_reason", server_message=""), "mbn_refused", {}),
        (mbn.MbnAuthError("wrong password"), "mbn_auth_failed", {}),
        (
            pipeline.RetryLater("MBN_BASE_URL is not set", code=SyncErrorCode.MBN_NOT_CONFIGURED),
            "mbn_not_configured",
            {},
        ),
        (RuntimeError("a bug of ours"), "unknown", {}),
    ],
)
def test_an_error_is_stored_as_its_code_and_parameters_next_to_its_text(error, code, params):
    failure = failure_of(error)

    assert failure.code == code and failure.text == str(error)
    assert params.items() <= failure.params.items()
    assert failure.on_calendar()["last_error_code"] == code


def test_an_unknown_or_empty_code_is_worded_as_a_failed_sync():
    with translation.override("nb"):
        assert describe("") == describe("no_such_code") == describe(SyncErrorCode.UNKNOWN)
        assert describe("")[0] == "Siste synkronisering feilet"


CLASSIFY = importlib.import_module("sync.migrations.0011_classify_error_texts").classify


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (
            "A manual absence in MBN overlaps: 02.12 10:00: MBN refused an overlapping absence: busy.",
            "mbn_conflict_manual_absence",
        ),
        ("MBN: MBN is throttling the enterprise; try again in 1 s.", "mbn_throttled"),
        ("will retry: MBN is unavailable (HTTP 503); the sync tries again later.", "mbn_unavailable"),
        ("MBN refused the API user 'x' or its password: check the API user in Min Bedrift.", "mbn_auth_failed"),
        ("MBN_BASE_URL is not set: the MBN API address is needed to push absences", "mbn_not_configured"),
        (
            "Microsoft Graph denied the app access to the mailbox of user u1 (ErrorAccessDenied: x): the mailbox is "
            "outside the app's access scope.",
            "mailbox_out_of_scope",
        ),
        (
            "User u1 has no mailbox in Exchange Online that Microsoft Graph can read (MailboxNotEnabledForRESTAPI)",
            "mailbox_not_enabled",
        ),
        ("the calendar could not be read (no mailbox for this user in the tenant)", "mailbox_not_found"),
        ("The app lacks the Microsoft Graph application permission Calendars.Read", "permission_missing"),
        ("AADSTS7000215: Invalid client secret provided.", "auth_failed"),
        ("will retry: Microsoft Graph is throttling the app; try again in 5 s.", "throttled"),
        ("Microsoft Graph did not answer within 10 s.", "timeout"),
        ("Microsoft Graph is unavailable (HTTP 503); the sync tries again later.", "service_unavailable"),
        ("Microsoft Graph refused the request (HTTP 400 BadRequest): bad filter.", "request_refused"),
        ("boom", "unknown"),
    ],
)
def test_errors_recorded_before_codes_get_the_code_the_old_substring_rules_meant(text, code):
    assert CLASSIFY(text) == code


@pytest.mark.django_db
def test_the_migration_gives_recorded_errors_a_code_and_keeps_their_text():
    from django.apps import apps

    from customers.models import ServiceUser
    from sync.models import CalendarSource, CalendarUser, SyncRun
    from tests.factories import make_customer

    customer = make_customer()
    source = CalendarSource.objects.create(customer=customer, activation_group="g", last_error="429 throttled")
    user = ServiceUser.objects.create(customer=customer, email="a@b.no", msisdn="+4791234567")
    text = "A manual absence in MBN overlaps: 02.12 10:00"
    calendar = CalendarUser.objects.create(service_user=user, source=source, provider_user_id="a", last_error=text)
    run = SyncRun.objects.create(source=source, service_user=user, started_at=source.created_at, error="boom")
    coded = SyncRun.objects.create(
        source=source, started_at=source.created_at, error="throttled", error_code="mbn_unavailable"
    )
    importlib.import_module("sync.migrations.0011_classify_error_texts").classify_recorded_errors(apps, None)

    calendar.refresh_from_db()
    source.refresh_from_db()
    assert (calendar.last_error_code, calendar.last_error) == ("mbn_conflict_manual_absence", text)
    assert source.last_error_code == "throttled"
    assert SyncRun.objects.get(pk=run.pk).error_code == "unknown"
    assert SyncRun.objects.get(pk=coded.pk).error_code == "mbn_unavailable", "a code already stored stays"


@pytest.mark.django_db
def test_staff_admin_shows_the_worded_error_with_the_text_and_the_advice(admin_client, settings):
    from django.urls import reverse

    from customers.models import ServiceUser
    from sync.models import CalendarSource, CalendarUser
    from tests.factories import make_customer

    settings.OTP_REQUIRED_FOR_STAFF = False
    customer = make_customer()
    text = "Microsoft Graph denied the app access to the mailbox of user u1: outside the app's access scope."
    source = CalendarSource.objects.create(
        customer=customer, activation_group="g", last_error=text, last_error_code="mailbox_out_of_scope"
    )
    user = ServiceUser.objects.create(customer=customer, email="a@b.no", msisdn="+4791234567")
    calendar = CalendarUser.objects.create(
        service_user=user, source=source, provider_user_id="u1", last_error=text, last_error_code="mailbox_out_of_scope"
    )
    title = "En postboks er utenfor Kalender Push sin tilgang i Exchange"

    listed = admin_client.get(reverse("admin:sync_calendaruser_changelist")).content.decode()
    shown = admin_client.get(reverse("admin:sync_calendaruser_change", args=[calendar.pk])).content.decode()
    dashboard = admin_client.get(reverse("admin:dashboard")).content.decode()
    source_page = admin_client.get(reverse("admin:sync_calendarsource_change", args=[source.pk])).content.decode()

    assert title in listed and "outside the app&#x27;s access scope" in listed
    assert title in shown and "programtilgangspolicy" in shown
    assert title in dashboard and title in source_page
