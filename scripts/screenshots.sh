#!/usr/bin/env bash
# Regenerates the user guides' screenshots: runs the browser tests (tests/e2e) with KP_DOC_SCREENSHOTS
# set, so that besides test-output/e2e/ the pages the guides show are written, scaled down, to docs/img/
# (or the directory given as KP_DOC_SCREENSHOTS). Compiles the Norwegian translations first, since the
# guides show the portal and admin in Norwegian. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export KP_DOC_SCREENSHOTS=${KP_DOC_SCREENSHOTS:-docs/img}
.venv/bin/python manage.py compilemessages --ignore=.venv -v 0
.venv/bin/pytest -p no:cacheprovider -m e2e tests/e2e "$@"
echo "Screenshots: test-output/e2e/ (all pages), $KP_DOC_SCREENSHOTS/ (the guides')"
