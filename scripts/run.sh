#!/usr/bin/env bash
# The demo: migrate, seed, then the web server, the django-q2 cluster and (with a broker) a Celery
# worker, all stopped together on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
# Every process reads PORT: the web server listens on it and, without PUBLIC_BASE_URL, the webhooks
# the simulators deliver and the links the demo prints go to it.
export PORT=${PORT:-8000}
# seed_demo and demo_sync live in devtools/ (an app with DEBUG on, the default, or DEVTOOLS=true).
export DEVTOOLS=true

$py manage.py migrate --noinput -v 0
seeded=$($py manage.py seed_demo)
echo "$seeded"

pids=()
stop() {
    trap - INT TERM EXIT
    echo "Stopping…"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

if [ -z "${MBN_BASE_URL:-}" ] && [ -z "${GRAPH_BASE_URL:-}" ]; then
    # No real services configured: the loopback simulators with the demo customers' calendars.
    rm -f var/simulators.env
    $py manage.py demo_sync --env-file var/simulators.env &
    pids+=($!)
    for _ in $(seq 1 100); do [ -s var/simulators.env ] && break; sleep 0.2; done
    set -a; . var/simulators.env; set +a
fi
$py manage.py qcluster &
pids+=($!)
broker=$($py -c 'import django, os; os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalenderpush.settings"); django.setup(); from django.conf import settings; print("" if settings.CELERY_TASK_ALWAYS_EAGER else settings.CELERY_BROKER_URL)')
if [ -n "$broker" ]; then
    .venv/bin/celery -A kalenderpush worker -Q default,sync --concurrency 2 -l info &
    pids+=($!)
else
    echo "No CELERY_BROKER_URL: Celery tasks run inline (eager) in the q2 workers."
fi
$py manage.py runserver --noreload 127.0.0.1:$PORT &
pids+=($!)
# Repeat the demo logins once the servers are up, below their start-up lines.
( sleep 4; echo; echo "Kalender Push is running. Demo logins:"; grep -E "Admin:|Portal:|^  " <<<"$seeded" || true
  echo "Fjellheim Konsult AS has connected nothing yet: log in as its IT admin (it@fjellheim-konsult.no) and open"
  echo "Tilkoblinger to connect Microsoft 365 by consent, choose a group and connect MBN (docs/user-guide-portal.md)."
  echo ) &
wait -n "${pids[@]}"
