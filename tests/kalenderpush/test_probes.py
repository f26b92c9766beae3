"""/healthz, /readyz and /metrics: what a load balancer and Prometheus read, without a login and without a
customer's data."""

import time
from collections.abc import Iterator

import pytest
from celery import current_app

from common import metrics
from tests.factories import make_customer, make_users

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"


def test_readyz_names_the_q2_cluster_when_no_cluster_reports_itself(client):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "database": "ok",
        "q2_cluster": "down",
        "broker": "not used",
        "celery_workers": 0,
        "status": "down",
        "down": ["q2_cluster"],
    }


@pytest.fixture
def celery_with_a_broker() -> Iterator[None]:
    eager = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False
    yield
    current_app.conf.task_always_eager = eager


def test_readyz_names_an_unreachable_broker_and_answers_within_seconds(client, settings, celery_with_a_broker):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    started = time.monotonic()
    response = client.get("/readyz")

    assert time.monotonic() - started < 5
    assert response.status_code == 503
    report = response.json()
    assert report["broker"] == "down"
    assert report["celery_workers"] == 0
    assert set(report["down"]) == {"broker", "celery_workers", "q2_cluster"}


def test_metrics_are_not_there_until_a_token_is_set(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_metrics_refuse_a_missing_or_wrong_token(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    missing = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-tokem"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"kalenderpush" not in missing.content + wrong.content


def test_metrics_give_counts_and_states_but_no_customer_data(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    customer = make_customer(name="Hemmelig Kunde AS")
    make_users(customer, 3)
    metrics.count_sync_run(provider="graph", error_code="mbn_unavailable", retrying=True)
    metrics.count_mbn_answer(429)

    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'kalenderpush_sync_runs_total{error_code="mbn_unavailable",outcome="retry",provider="graph"}' in text
    assert 'kalenderpush_mbn_requests_total{status="429"}' in text
    assert "kalenderpush_mbn_throttled_total" in text
    assert "kalenderpush_change_to_mbn_seconds_bucket" in text or "kalenderpush_change_to_mbn_seconds" in text
    assert 'kalenderpush_service_users{state="unmatched"}' in text
    assert 'kalenderpush_queue_depth{queue="q2"} 0.0' in text
    assert "Hemmelig" not in text and "@" not in text


def test_the_probes_answer_a_load_balancer_asking_by_address_over_http(client, settings):
    settings.ALLOWED_HOSTS = ["kalenderpush.nettsoft.no"]
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz", HTTP_HOST="10.0.3.17:8000").status_code == 200
    assert client.get("/readyz", HTTP_HOST="10.0.3.17:8000").status_code == 503  # answered: the q2 cluster is down
    assert client.get("/portal/", HTTP_HOST="10.0.3.17:8000").status_code == 400  # everything else checks the host
    assert client.get("/portal/", HTTP_HOST="kalenderpush.nettsoft.no").status_code == 301  # and goes to https
