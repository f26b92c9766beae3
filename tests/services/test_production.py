"""The production process set, as `make release` and `make serve` start it, on PostgreSQL and Redis.

scripts/release.sh (migrate, collectstatic, compilemessages, check --deploy) and then scripts/serve.sh
(gunicorn, the q2 cluster, a Celery worker) run with DEBUG off against this test's own database and broker;
the simulators run in this process, and the served app reaches them only through the base-URL settings and
the CA bundle (DEVTOOLS stays off there). Over plain http on loopback, as a TLS-terminating proxy would speak
to it: SECURE_SSL_REDIRECT, SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE are set off explicitly.

Set PRODUCTION_TEST_PORT to choose the port (default: a free one).
"""

import contextlib
import datetime as dt
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from django.conf import global_settings
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import override_settings
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from customers.models import ServiceUser
from portal.models import PortalMembership
from sync import jobs
from sync.rules import Event
from tests.factories import make_customer
from tests.services.helpers import children

simulators = pytest.importorskip("devtools.simulators")
demo = pytest.importorskip("devtools.demo")
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ROOT = Path(__file__).resolve().parents[2]
OSLO = ZoneInfo("Europe/Oslo")
PASSWORD = "Riktig-hest-batteri-stift-42"
METRICS_TOKEN = secrets.token_urlsafe(24)
KEEP = ("PATH", "HOME", "LANG", "LC_ALL")
CHROMIUM = Path("/usr/bin/chromium")


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    if os.environ.get("PRODUCTION_TEST_PORT"):
        return int(os.environ["PRODUCTION_TEST_PORT"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def production_env(*, port: int, tmp_path: Path, sims: Any) -> dict[str, str]:
    """What an operator's environment file holds, pointed at this test's database, broker and simulators."""
    base = {key: os.environ[key] for key in KEEP if key in os.environ}
    return {
        **base,
        "DEBUG": "false",
        "DEVTOOLS": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CREDENTIALS_KEY": django_settings.CREDENTIALS_KEY,  # the secrets this test stores must read there
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": django_settings.CELERY_RESULT_BACKEND or "",
        "PORT": str(port),
        "BIND_ADDRESS": "127.0.0.1",
        "ALLOWED_HOSTS": "127.0.0.1",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "STATIC_ROOT": str(tmp_path / "static"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "METRICS_TOKEN": METRICS_TOKEN,
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        # what those three switches set off, and `make release` would otherwise refuse
        "SILENCED_SYSTEM_CHECKS": "security.W008,security.W012,security.W016",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "WEB_CONCURRENCY": "2",
        "Q_WORKERS": "1",
        "KP_STOP_TIMEOUT": "30",
        **sims.app_settings(),
    }


@dataclass
class Stack:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=10, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for child in children(pid):
        found |= {child} | _descendants(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(condition: Callable[[], Any], seconds: float, what: str, stack: Stack | None = None) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = condition()
        except requests.RequestException:
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {seconds} s" + (f"\n{stack.output()}" if stack else ""))


@pytest.fixture
def sims() -> Iterator[Any]:
    with simulators.Simulators.start() as running:
        running.graph.allow_http_webhooks_on_loopback()  # the stack speaks plain http on 127.0.0.1
        yield running


@contextlib.contextmanager
def served(sims: Any, tmp_path: Path, **extra_env: str) -> Iterator[Stack]:
    """`make release`, then `make serve` until the test stops it (or, when it failed first, until here)."""
    port = _free_port()
    env = {**production_env(port=port, tmp_path=tmp_path, sims=sims), **extra_env}
    release = subprocess.run(["scripts/release.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert release.returncode == 0, release.stdout[-3000:] + release.stderr[-3000:]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["scripts/serve.sh"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = Stack(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        wait_for(lambda: running.get("/healthz").status_code == 200, 60, "/healthz", running)
        yield running
    finally:
        if process.poll() is None:  # the test failed before it stopped the stack itself
            _stop_for_good(process)


@pytest.fixture
def stack(sims: Any, tmp_path: Path) -> Iterator[Stack]:
    with served(sims, tmp_path) as running:
        yield running


def stop_cleanly(stack: Stack) -> None:
    """SIGTERM to `make serve`: it exits 0, and every process it started is gone."""
    processes = _descendants(stack.process.pid)
    assert len(processes) >= 3, "gunicorn, the q2 cluster and the Celery worker, with their workers"
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(60) == 0, stack.output()
    assert "supervise: stopped" in stack.output()
    assert [pid for pid in processes if _alive(pid)] == []
    with pytest.raises(requests.ConnectionError):
        stack.get("/healthz")


def _stop_for_good(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to serve.sh (which stops its processes), SIGKILL to whatever is left after 40 s."""
    left = _descendants(process.pid)
    process.terminate()
    try:
        process.wait(40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    for pid in left:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _csrf_token(page: requests.Response) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, page.text[:2000]
    return match.group(1)


def _totp_code(device: TOTPDevice) -> str:
    """What the staff member's authenticator app shows now."""
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


def _log_in_to_admin(stack: Stack, staff: Any, device: TOTPDevice) -> requests.Session:
    """As a browser does: user name, password and code; then, asked which device, the one listed."""
    session = requests.Session()
    url = f"{stack.url}/admin/login/?next=/admin/"
    page = session.get(url, timeout=10)
    assert page.status_code == 200 and 'name="otp_token"' in page.text, "production asks staff for a TOTP code"
    form = {"username": staff.username, "password": PASSWORD, "next": "/admin/"}
    page = session.post(url, data={**form, "csrfmiddlewaretoken": _csrf_token(page), "otp_token": _totp_code(device)})
    listed = re.search(r'<option value="([^"]+)"[^>]*>\s*Telefon', page.text)
    assert listed, page.text[-3000:]
    answer = session.post(
        url,
        data={
            **form,
            "csrfmiddlewaretoken": _csrf_token(page),
            "otp_device": listed.group(1),
            "otp_token": _totp_code(device),
        },
        timeout=10,
    )
    assert answer.status_code == 200 and answer.url == f"{stack.url}/admin/", answer.text[-3000:]
    return session


def test_the_production_stack_serves_probes_metrics_logins_static_files_and_syncs(stack, sims, settings):
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # the stack checks passwords with these
    # --- health ---------------------------------------------------------------------------------------
    healthz = stack.get("/healthz")
    assert (healthz.status_code, healthz.text) == (200, "ok")
    ready = wait_for(
        lambda: (answer := stack.get("/readyz")).status_code == 200 and answer, 90, "/readyz 200", stack
    ).json()
    assert ready["database"] == ready["broker"] == ready["q2_cluster"] == "ok"
    assert ready["celery_workers"] >= 1
    assert ready["down"] == []

    # --- metrics --------------------------------------------------------------------------------------
    assert stack.get("/metrics").status_code == 401
    assert stack.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = stack.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    assert 'kalenderpush_queue_depth{queue="celery:sync"}' in scraped.text

    # --- admin with staff TOTP, and a hashed, compressed static file ---------------------------------
    staff = get_user_model().objects.create_superuser(username="line.berg@nettsoft.no", password=PASSWORD)
    device = TOTPDevice.objects.create(user=staff, name="Telefon", confirmed=True)
    admin = _log_in_to_admin(stack, staff, device)
    dashboard = admin.get(f"{stack.url}/admin/", timeout=10)
    assert dashboard.status_code == 200 and "Kalender Push" in dashboard.text
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', dashboard.text)
    assert stylesheet, "admin links its stylesheet by a hashed name"
    static = requests.get(f"{stack.url}{stylesheet.group(1)}", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert static.status_code == 200
    assert static.headers["Content-Encoding"] == "gzip"
    assert "immutable" in static.headers["Cache-Control"]

    # --- the portal -----------------------------------------------------------------------------------
    customer = make_customer(name="Fjord Elektro AS")
    member = get_user_model().objects.create_user(username="kari@fjord.no", email="kari@fjord.no", password=PASSWORD)
    PortalMembership.objects.create(user=member, customer=customer, role=PortalMembership.Role.ADMIN)
    portal = requests.Session()
    login = portal.get(f"{stack.url}/portal/logg-inn/", timeout=10)
    overview = portal.post(
        f"{stack.url}/portal/logg-inn/",
        data={"csrfmiddlewaretoken": _csrf_token(login), "username": "kari@fjord.no", "password": PASSWORD},
        timeout=10,
    )
    assert overview.status_code == 200 and overview.url == f"{stack.url}/portal/", overview.text[:2000]
    assert "Fjord Elektro AS" in overview.text

    # --- a Graph change notification, synced by the stack's Celery worker to MBN -----------------------
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@fjord.no", name=f"Ansatt {i}", msisdn=f"+479200000{i}"
        )
        for i in range(2)
    ]
    source = demo.wire_customer(
        sims=sims, customer=customer, users=users, tenant_id="fjord-tenant", enterprise_id="fjord"
    )
    with override_settings(PUBLIC_BASE_URL=stack.url, **sims.app_settings()):
        jobs.ensure_subscriptions(source=source)  # Graph validates the stack's webhook before it subscribes
    assert len(sims.graph.subscriptions()) == 2
    start = (timezone.now() + dt.timedelta(days=1)).astimezone(OSLO).replace(hour=9, minute=0, second=0, microsecond=0)
    event = Event("kunde", start, start + dt.timedelta(hours=2), subject="Kundebesøk &Eks")
    sims.graph.put_event(demo.graph_user_id(users[0]), demo.to_sim_events([event])[0])
    wait_for(
        lambda: any(a["reason"] == "Eksternt Møte" for a in sims.mbn.absences("fjord", users[0].msisdn)),
        30,
        "the absence on MBN",
        stack,
    )
    assert sims.graph.notification_log(), "Graph posted the change to the stack's webhook"
    counted = stack.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert re.search(r'kalenderpush_sync_runs_total\{error_code="",outcome="ok",provider="graph"\} [1-9]', counted)
    assert re.search(r'kalenderpush_mbn_requests_total\{status="20\d"\} [1-9]', counted), "the worker's count"
    assert "kalenderpush_change_to_mbn_seconds_count" in counted

    # --- a clean stop ---------------------------------------------------------------------------------
    stop_cleanly(stack)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"E2E BROWSER TESTS NOT RUN: {CHROMIUM} is missing")
def test_the_browser_suite_passes_against_the_production_stack(sims, tmp_path):
    """tests/e2e once more, its browser against the served stack (E2E_BASE_URL) on this database (--reuse-db);
    staff sign in with a password there, as the suite does against its live server."""
    with served(sims, tmp_path, OTP_REQUIRED_FOR_STAFF="false") as stack:
        wait_for(lambda: stack.get("/readyz").status_code == 200, 90, "/readyz 200", stack)
        test_database = connection.settings_dict["NAME"]
        suite = subprocess.run(
            # The onboarding tests register Nettsoft's app and the tenant to connect in simulators of their own
            # process and point the app's settings at them, which a separately served stack cannot share.
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/e2e",
                "-m",
                "e2e",
                "--ignore=tests/e2e/test_onboarding.py",
                "--reuse-db",
                "-p",
                "no:cacheprovider",
                "-q",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "E2E_BASE_URL": stack.url,
                "DATABASE_URL": _database_url().replace(f"/{test_database}", f"/{test_database.removeprefix('test_')}"),
            },
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert suite.returncode == 0, suite.stdout[-6000:] + suite.stderr[-3000:]
        summary = suite.stdout.strip().splitlines()[-1]
        assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
        assert "HeadlessChrome" in stack.log.read_text(errors="replace"), "the browser asked the served stack"
        stop_cleanly(stack)
