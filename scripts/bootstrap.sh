#!/usr/bin/env bash
# Creates the virtualenv and installs the pinned requirements, plus the Debian tools the build needs.
set -euo pipefail
python=${1:-python3.11}
venv=${2:-.venv}

if ! command -v msgfmt >/dev/null; then
    echo "Installing gettext (msgfmt compiles the Norwegian translations)…"
    apt-get install -y -q gettext >/dev/null || { apt-get update -q && apt-get install -y -q gettext; }
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "Installing chromium (the browser tests in tests/e2e drive Debian's chromium with Playwright)…"
    apt-get install -y -q chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }
fi

command -v "$python" >/dev/null || python=python3
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r requirements-dev.txt
