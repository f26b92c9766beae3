#!/usr/bin/env bash
# `make bench`: the benchmarks of docs/benchmarks.md, one JSON file each in var/bench/ (progress on stderr),
# then a summary. The embedded default (a fresh SQLite file, threads, no broker) unless BENCH_SERVICES=1
# adds the PostgreSQL + Redis + 2 Celery worker run. BENCH_USERS (10000), BENCH_LATENCY_USERS (2000) and
# BENCH_SOAK_MINUTES (3) scale the sync benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
out=var/bench
mkdir -p "$out"
users=${BENCH_USERS:-10000}
latency_users=${BENCH_LATENCY_USERS:-2000}
soak_minutes=${BENCH_SOAK_MINUTES:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DATABASE_URL="sqlite:///$work/bench.sqlite3"
export DEVTOOLS=true  # the bench_* commands live in devtools/, also when a .env turns DEBUG off
unset CELERY_BROKER_URL CELERY_RESULT_BACKEND MBN_PACER_URL
started=$(date +%s)
step() { echo "== $1 ($(( $(date +%s) - started )) s)" >&2; }

$py manage.py migrate --noinput -v 0
step "rules engine"
$py -m devtools.benchmarks.rules --json > "$out/rules.json"
step "billing run, 200 and 2000 customers"
$py manage.py bench_billing --customers 200 --users 50 --json > "$out/billing-200.json"
$py manage.py bench_billing --customers 2000 --users 50 --json > "$out/billing-2000.json"
step "calendar sync, $users users, embedded default"
$py manage.py bench_sync --users "$users" --events-per-user 20 --latency-ms 50 --users-per-customer 20 \
    --concurrency 32 --json > "$out/sync-embedded.json"
step "propagation latency, $latency_users users"
$py manage.py bench_latency --users "$latency_users" --changes 100 --over-seconds 10 --latency-ms 50 \
    --users-per-customer 20 --concurrency 32 --json \
    > "$out/latency.json"
step "soak with faults and an MBN outage, $soak_minutes min"
$py manage.py bench_soak --users 300 --minutes "$soak_minutes" --outage-seconds 60 --fault-rate 0.10 --json \
    > "$out/soak.json"
if [ "${BENCH_SERVICES:-0}" = 1 ]; then
    step "calendar sync, $users users, PostgreSQL + Redis + 2 Celery workers"
    psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS kalenderpush_bench" -c "CREATE DATABASE kalenderpush_bench"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kalenderpush_bench \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/8 CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/9 \
        bash -c "$py manage.py migrate --noinput -v 0 && $py manage.py bench_sync --users $users --events-per-user 20 \
            --latency-ms 50 --users-per-customer 20 --concurrency 32 --celery-workers 2 --json" > "$out/sync-celery.json"
fi
step "done"
$py -m devtools.benchmarks.report "$out"
