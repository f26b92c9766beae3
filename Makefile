# Kalender Push. Quick start: `make run` (the demo on http://127.0.0.1:8000) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test bench lint typecheck messages clean release serve

$(STAMP): requirements.txt requirements-dev.txt
	./scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

messages: $(STAMP)
	$(VENV)/bin/python manage.py compilemessages --ignore=.venv -v 0

run: $(STAMP) messages
	./scripts/run.sh

test: $(STAMP) messages
	./scripts/test.sh

bench: $(STAMP) messages
	./scripts/bench.sh

# Production (docs/operations.md, "Running in production"): `make release` once per deploy, then `make serve`.
release:
	./scripts/release.sh

serve:
	./scripts/serve.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy .

clean:
	rm -rf $(VENV) db.sqlite3* var staticfiles .pytest_cache .ruff_cache .mypy_cache
	find . -name '*.mo' -not -path './.venv/*' -delete
