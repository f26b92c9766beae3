"""The lab tooling as a Django app: its management commands (`seed_demo`, `demo_sync`, `bench_*`)."""

from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    name = "devtools"
    verbose_name = "Lab tooling"
