#!/usr/bin/env bash
# `make release`: what a deploy runs once, before (re)starting the processes: apply migrations, collect the
# static files for WhiteNoise (compressed, hashed names), compile the translations, and run Django's deployment
# checks. Same environment as `make serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${KP_VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"
python manage.py migrate --noinput
python manage.py collectstatic --noinput -v 0
python manage.py compilemessages --ignore="$venv" -v 0
python manage.py check --deploy --fail-level WARNING  # a deploy warning stops the release
