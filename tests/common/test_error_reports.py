"""Error reports to Sentry leave without subjects, secrets, tokens, passwords, bodies or e-mail addresses.

Sentry is started as in production (common.error_reports) with a transport that keeps the envelopes instead of
sending them, and a failing request carries all of those."""

import json
from collections.abc import Iterator

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from common.error_reports import scrub_breadcrumb, scrub_event, start_error_reports

SUBJECT = "Tannlege &Gåt hos Dr. Hansen"
SECRETS = (
    SUBJECT,
    "Tannlege",
    "ola.nordmann",
    "kunde.no",
    "+4791234567",
    "klient-hemmelighet-123",
    "abc123def",
    "Bearer-token-verdi",
    "sesjonsnokkel",
    "csrf-verdi",
    "passord-i-body",
)


class CapturingTransport(Transport):
    envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        CapturingTransport.envelopes.append(envelope)


@pytest.fixture
def sentry_events() -> Iterator[None]:
    """Sentry as in production, with envelopes kept in CapturingTransport.envelopes instead of sent."""
    CapturingTransport.envelopes = []
    start_error_reports(dsn="https://public@sentry.invalid/1", environment="test", transport=CapturingTransport)
    try:
        yield
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # no DSN: nothing is reported by the tests that follow


@pytest.mark.django_db
def test_a_failing_request_is_reported_without_anything_secret_or_personal(client, settings, sentry_events):
    settings.ROOT_URLCONF = "tests.common.sentry_urls"
    client.raise_request_exception = False
    client.cookies["sessionid"] = "sesjonsnokkel"
    client.cookies["csrftoken"] = "csrf-verdi"

    response = client.post(
        "/webhooks/feiler/?validationToken=abc123def&mail=ola.nordmann@kunde.no",
        {
            "subject": SUBJECT,
            "user": "ola.nordmann@kunde.no",
            "number": "+4791234567",
            "secret": "klient-hemmelighet-123",
            "password": "passord-i-body",
        },
        headers={"Authorization": "Bearer Bearer-token-verdi", "X-Mailbox": "ola.nordmann@kunde.no"},
    )
    sentry_sdk.flush()
    events = [json.loads(item.payload.get_bytes()) for e in CapturingTransport.envelopes for item in e.items]

    assert response.status_code == 500
    exceptions = [event for event in events if event.get("exception")]
    assert exceptions, "the error was reported"
    assert exceptions[0]["exception"]["values"][-1]["type"] == "RuntimeError"
    assert exceptions[0]["exception"]["values"][-1]["value"].startswith("MBN refused the absence of [e-mail]")
    assert exceptions[0]["transaction"] == "/webhooks/feiler/"
    assert exceptions[0]["exception"]["values"][-1]["stacktrace"]["frames"][-1]["context_line"].startswith(
        "    raise RuntimeError("
    ), "the source lines stay readable"
    assert any(event.get("logentry") for event in events), "the error log line was reported"
    sent = json.dumps(events, ensure_ascii=False)
    for secret in SECRETS:
        assert secret not in sent, f"{secret!r} left in an error report"
    assert "[e-mail]" in sent and "[Filtered]" in sent


def test_the_scrubber_keeps_what_helps_and_drops_the_rest():
    event = {
        "message": "sync of per@firma.no failed",
        "user": {"id": 7, "email": "per@firma.no", "username": "per@firma.no", "ip_address": "10.0.0.1"},
        "request": {
            "url": "https://kp.example/webhooks/graph/?validationToken=x",
            "headers": {"Authorization": "Bearer x", "Cookie": "a=b", "User-Agent": "Graph"},
            "data": {"value": [{"subject": "Lege"}]},
        },
        "extra": {"events": [{"subject": "Lege", "body": "Innkalling", "attendees": ["a@b.no"]}], "batch": 3},
        "exception": {"values": [{"stacktrace": {"frames": [{"function": "push", "vars": {"secret": "x"}}]}}]},
    }

    scrubbed = scrub_event(event)

    assert scrubbed["message"] == "sync of [e-mail] failed"
    assert scrubbed["user"] == {"id": 7}
    assert scrubbed["request"] == {
        "url": "https://kp.example/webhooks/graph/",
        "headers": {"Authorization": "[Filtered]", "Cookie": "[Filtered]", "User-Agent": "Graph"},
    }
    assert scrubbed["extra"] == {
        "events": [{"subject": "[Filtered]", "body": "[Filtered]", "attendees": ["[e-mail]"]}],
        "batch": 3,
    }
    assert scrubbed["exception"]["values"][0]["stacktrace"]["frames"] == [{"function": "push"}]


def test_breadcrumbs_lose_sql_parameters_query_strings_and_addresses():
    assert scrub_breadcrumb({"category": "query", "message": "SELECT 1", "data": {"params": ["a@b.no"]}}) == {
        "category": "query",
        "message": "SELECT 1",
    }
    crumb = scrub_breadcrumb({"category": "httplib", "data": {"url": "https://mbn/x?token=1", "status_code": 429}})
    assert crumb == {"category": "httplib", "data": {"url": "https://mbn/x", "status_code": 429}}
    logged = scrub_breadcrumb({"category": "sync", "message": "read ola@kunde.no with Bearer eyJabc.def"})
    assert logged == {"category": "sync", "message": "read [e-mail] with Bearer [Filtered]"}


def test_an_address_url_encoded_in_a_path_is_scrubbed_too():
    url = "https://admin.googleapis.com/admin/directory/v1/groups/alle%40kunde.no/members"
    crumb = scrub_breadcrumb({"category": "httplib", "data": {"url": url, "status_code": 404}})
    assert crumb["data"]["url"] == "https://admin.googleapis.com/admin/directory/v1/groups/[e-mail]/members"
    refused = scrub_breadcrumb({"category": "sync", "message": f"<HttpError 404 when requesting {url}?alt=json>"})
    assert "kunde.no" not in refused["message"]
