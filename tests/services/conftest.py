"""The `services` tests: PostgreSQL as the database, Redis as the broker, a real Celery worker."""

import pytest

from kalenderpush.celery import app as project_celery_app


@pytest.fixture
def celery_app():  # type: ignore[no-untyped-def]
    """The project's own Celery app (configured from Django settings), not celery's test app."""
    return project_celery_app


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, object]:
    return {"queues": ("default", "sync"), "perform_ping_check": False}
