#!/usr/bin/env bash
# `make serve`: the production process set of the Procfile (gunicorn, the q2 cluster, a Celery worker, the EWS streaming listener), supervised
# as one by scripts/supervise.sh. Refuses to start with DEBUG on, without DATABASE_URL, CELERY_BROKER_URL or
# CREDENTIALS_KEY, with migrations not applied or static files not collected: run `make release` first
# (scripts/release.sh). Ctrl-C or SIGTERM stops everything; when one process ends, the others are stopped too.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${KP_VENV:-.venv}
[ -x "$venv/bin/python" ] || { echo "serve: no virtualenv at $venv (set KP_VENV, or: python -m venv .venv && .venv/bin/pip install -r requirements.txt)" >&2; exit 2; }
export PATH="$PWD/$venv/bin:$PATH"
export PORT=${PORT:-8000}

# The settings as the processes will read them (environment and .env), checked before anything starts.
python - <<'PY' || exit 2
import os, sys
from django.core.exceptions import ImproperlyConfigured
try:
    import kalenderpush.settings as settings
except ImproperlyConfigured as error:
    sys.exit(f"serve: refusing to start: {error}")
problems = []
if settings.DEBUG:
    problems.append("DEBUG is on. `make serve` runs production: set DEBUG=false (for the demo use `make run`)")
for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CREDENTIALS_KEY"):
    if not os.environ.get(name):
        problems.append(f"{name} is not set (see .env.example and docs/operations.md)")
if problems:
    sys.exit("serve: refusing to start:\n  - " + "\n  - ".join(problems))
PY
if ! python manage.py migrate --check >/dev/null 2>&1; then
    echo "serve: refusing to start: the database has unapplied migrations (or cannot be reached). Run \`make release\` first." >&2
    exit 2
fi
static_root=$(python -c 'import kalenderpush.settings as s; print(s.STATIC_ROOT)')
if [ ! -f "$static_root/staticfiles.json" ]; then
    echo "serve: refusing to start: no collected static files in $static_root. Run \`make release\` first." >&2
    exit 2
fi

# Every process counts its metrics in files here and /metrics adds them up (prometheus-client multiprocess mode);
# the files of an earlier run are removed, as the processes that wrote them are gone.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/metrics}
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete

echo "serve: Kalender Push on port $PORT (${KP_PROCFILE:-Procfile}); Ctrl-C stops it."
exec scripts/supervise.sh "${KP_PROCFILE:-Procfile}"
