"""What a load balancer and Prometheus ask the site: /healthz, /readyz and /metrics.

None of them needs a login and none shows a secret or a customer's data: the probes name the services that
are down, /metrics gives counts only, behind the bearer token METRICS_TOKEN (docs/operations.md). The probes
are answered by `ProbeMiddleware`, first in MIDDLEWARE: before the host check (a load balancer asks by the
instance's address, which ALLOWED_HOSTS does not list) and before the redirect to https.
"""

import hmac
import logging
from collections.abc import Callable, Iterator
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.models import OrmQ
from django_q.status import Stat
from kombu import Connection

from common import metrics
from common.queue import celery_takes_sync_work
from customers.models import ServiceUser, ServiceUserQuerySet, served_user

logger = logging.getLogger(__name__)

CELERY_QUEUES = ("default", "sync")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """The process serves requests: nothing else is asked (no database)."""
    return HttpResponse("ok", content_type="text/plain")


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker, the q2 cluster and at least one Celery worker answer; 503 naming
    what is down. Each check is bounded by a short timeout, so the answer comes within a few seconds."""
    report: dict[str, Any] = {"database": _database(), "q2_cluster": _q2_cluster()}
    if not celery_takes_sync_work():  # the embedded default: sync work runs in the q2 cluster
        report.update(broker="not used", celery_workers=0)
        down = [name for name, state in report.items() if state == "down"]
    else:
        report["broker"] = _broker()
        report["celery_workers"] = _celery_workers() if report["broker"] == "ok" else 0
        down = [name for name, state in report.items() if state == "down"]
        if report["celery_workers"] == 0:
            down.append("celery_workers")
    report["status"] = "down" if down else "ok"
    report["down"] = down
    return JsonResponse(report, status=503 if down else 200)


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception:
        logger.warning("readyz: the database does not answer", exc_info=True)
        return "down"


def _broker_connection() -> Connection:
    timeout = settings.READYZ_CELERY_TIMEOUT
    return Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=timeout,
        transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0},
    )


def _broker() -> str:
    try:
        with _broker_connection() as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)
        return "ok"
    except Exception:
        logger.warning("readyz: the Celery broker does not answer", exc_info=True)
        return "down"


def _celery_workers() -> int:
    """Workers that answered a ping within READYZ_CELERY_TIMEOUT."""
    try:
        with _broker_connection() as broker:
            answers = current_app.control.ping(timeout=settings.READYZ_CELERY_TIMEOUT, connection=broker)
        return len(answers or [])
    except Exception:
        logger.warning("readyz: the Celery workers could not be asked", exc_info=True)
        return 0


def _q2_cluster() -> str:
    """A q2 cluster of ours has reported itself within the last seconds: its sentinel stores its state in the
    shared cache (CACHE_URL) with a 3-second expiry on every round of its guard loop."""
    try:
        running = Stat.get_all()
    except Exception:
        logger.warning("readyz: the q2 cluster's heartbeat could not be read", exc_info=True)
        return "down"
    return "ok" if running else "down"


class ProbeMiddleware:
    """Answers /healthz and /readyz before any other middleware looks at the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.probes: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.probes.get(request.path_info)
        return probe(request) if probe is not None else self.get_response(request)


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text for whoever sends `Authorization: Bearer METRICS_TOKEN`; 404 while no token is set."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off: set METRICS_TOKEN")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("a bearer token is needed\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.render(_state_gauges), content_type=metrics.CONTENT_TYPE)


def _state_gauges() -> Iterator[metrics.Gauge]:
    """Gauges read at scrape time: service users by state, and the work waiting in each queue."""
    users = ServiceUser.objects.aggregate(
        served=Count("pk", filter=served_user()),
        stopping=Count("pk", filter=ServiceUserQuerySet.STOPPING),
        stopped=Count("pk", filter=~Q(stop_reason="") & Q(stopped_at__isnull=False)),
        failing=Count("pk", filter=served_user() & ServiceUserQuerySet.FAILING),
        unmatched=Count("pk", filter=ServiceUserQuerySet.UNMATCHED),
    )
    yield metrics.Gauge(
        "kalenderpush_service_users",
        "Service users by state: served (pushed to MBN), failing (served, last sync went wrong), stopping, "
        "stopped, unmatched (no MBN number).",
        ("state",),
        tuple(((state,), float(count)) for state, count in users.items()),
    )
    depths = [(("q2",), float(OrmQ.objects.count()))]
    if celery_takes_sync_work():
        depths += [((f"celery:{queue}",), depth) for queue, depth in _celery_queue_depths()]
    yield metrics.Gauge(
        "kalenderpush_queue_depth",
        "Tasks waiting: q2 (schedules, back office) and each Celery queue (the sync fleet on 'sync').",
        ("queue",),
        tuple(depths),
    )


def _celery_queue_depths() -> Iterator[tuple[str, float]]:
    try:
        with _broker_connection() as broker:
            channel: Any = broker.default_channel
            sizes = [(queue, float(channel._size(queue))) for queue in CELERY_QUEUES]  # kombu's virtual channels
    except Exception:
        logger.warning("metrics: the Celery queues could not be measured", exc_info=True)
        return
    yield from sizes
