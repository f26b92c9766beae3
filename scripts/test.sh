#!/usr/bin/env bash
# The whole suite: ruff (lint and format), mypy, import-linter (the dependency contracts in pyproject.toml),
# the default tests on SQLite, then the `services` tests on the machine's PostgreSQL and Redis with a real
# Celery worker. Fails when any part fails; pytest's exit 5
# ("no tests collected") is a failure too, since it means a suite silently vanished.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
status=0

step() {
    echo "== $*"
    "$@"
    local rc=$?
    if [ $rc -eq 5 ]; then
        echo "!! pytest collected no tests: $*" >&2
        rc=1
    fi
    [ $rc -eq 0 ] || status=1
}

step $bin/ruff check .
step $bin/ruff format --check .
step $bin/mypy .
step $bin/lint-imports
step $bin/pytest -m "not services" "$@"
DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/kalenderpush} \
CELERY_BROKER_URL=${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/14} \
CELERY_RESULT_BACKEND=${TEST_CELERY_RESULT_BACKEND:-redis://127.0.0.1:6379/15} \
    step $bin/pytest -m services -p no:cacheprovider "$@"

if [ $status -ne 0 ]; then
    echo "FAILED: see above." >&2
fi
exit $status
