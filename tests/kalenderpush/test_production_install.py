"""A production install carries no lab tooling: devtools/ and trustme (requirements-dev.txt) are neither installed
nor imported, and no product module refers to them; with DEBUG on or DEVTOOLS=true the lab commands are there."""

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.kalenderpush.test_settings import KEEP, PRODUCTION, ROOT, _manage

PRODUCT_PACKAGES = ("kalenderpush", "customers", "billing", "sync", "portal", "common")
LAB_ONLY = ("devtools", "trustme")

# Runs in a production environment with devtools/ and trustme made unimportable, as on a server where only
# requirements.txt is installed: loads the apps, the URLconf, the Celery app and every product module, runs
# `check --deploy`, and prints what was installed and which lab module anything asked for.
PRODUCTION_START = """
import importlib, json, os, pkgutil, sys
from importlib.abc import MetaPathFinder

LAB_ONLY = {lab_only!r}
asked = []

class LabToolingAbsent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LAB_ONLY:
            asked.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in a production install)", name=name)
        return None

sys.meta_path.insert(0, LabToolingAbsent())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalenderpush.settings")
import django
django.setup()
import kalenderpush.celery, kalenderpush.urls
from django.conf import settings
from django.core.management import call_command
from django.urls import get_resolver
get_resolver().url_patterns
loaded = []
for package in {packages!r}:
    if importlib.util.find_spec(package) is None:
        continue
    root = importlib.import_module(package)
    loaded.append(package)
    for module in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        importlib.import_module(module.name)
        loaded.append(module.name)
call_command("check", deploy=True, fail_level="WARNING")
print(json.dumps({{
    "apps": list(settings.INSTALLED_APPS),
    "loaded": loaded,
    "asked": asked,
    "lab_modules": sorted(m for m in sys.modules if m.split(".")[0] in LAB_ONLY),
}}))
"""


def test_a_production_install_starts_and_passes_check_deploy_without_the_lab_tooling():
    clean_env = {key: os.environ[key] for key in KEEP if key in os.environ}
    script = PRODUCTION_START.format(lab_only=LAB_ONLY, packages=PRODUCT_PACKAGES)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**clean_env, **PRODUCTION},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "System check identified no issues" in result.stderr + result.stdout
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert "devtools" not in shown["apps"]
    assert {"kalenderpush.urls", "sync.pipeline", "billing.services", "portal.views"} <= set(shown["loaded"])
    assert shown["asked"] == [], "product code asked for lab tooling"
    assert shown["lab_modules"] == []


def test_the_lab_commands_exist_with_debug_on_or_devtools_true_and_not_in_production():
    assert _manage("bench_sync", "--help").returncode == 0, "the embedded default (DEBUG on) has them"
    assert _manage("seed_demo", "--help", **PRODUCTION, DEVTOOLS="true").returncode == 0

    production = _manage("seed_demo", "--help", **PRODUCTION)
    assert production.returncode != 0
    assert "Unknown command: 'seed_demo'" in production.stderr


def _lab_references(path: Path) -> Iterator[str]:
    """Imports of devtools or trustme anywhere in the module (inside functions too), and dotted paths to them."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # a dotted path handed to import_string, Celery or q2 (the bare app label "devtools" in settings is how
            # DEBUG or DEVTOOLS installs it)
            names = [node.value] if re.fullmatch(r"(?:devtools|trustme)(?:\.\w+)+(?::\w+)?", node.value) else []
        for name in names:
            if name.split(".")[0] in LAB_ONLY:
                yield f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}: {name}"


def test_no_product_module_imports_the_lab_tooling():
    found = [
        reference
        for package in PRODUCT_PACKAGES
        if (ROOT / package).is_dir()
        for path in sorted((ROOT / package).rglob("*.py"))
        for reference in _lab_references(path)
    ]
    grep = subprocess.run(
        ["grep", "-rE", r"^\s*(from|import) (devtools|trustme)", *(p for p in PRODUCT_PACKAGES if (ROOT / p).is_dir())],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert found == []
    assert grep.stdout == ""


def test_production_requirements_leave_out_the_lab_tooling():
    runtime = (ROOT / "requirements.txt").read_text().lower()
    development = (ROOT / "requirements-dev.txt").read_text().lower()

    assert "trustme" not in runtime
    assert re.search(r"^trustme==", development, re.MULTILINE)
    assert re.search(r"^-r requirements\.txt$", development, re.MULTILINE)
