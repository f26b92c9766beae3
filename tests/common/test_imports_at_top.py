"""Our own modules are imported at the top of a module, never inside a function to dodge an import cycle.

The direction of the imports between the apps is checked by import-linter (`lint-imports`, contracts in
pyproject.toml); an import hidden inside a function escapes no contract, but it hides a cycle the code should
not have. The one exception: an AppConfig's `ready()`, which imports admin registrations and signal receivers once
the apps are loaded, each with a comment saying why.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("kalenderpush", "customers", "billing", "sync", "portal", "common")
FIRST_PARTY = (*PRODUCT_PACKAGES, "devtools")


def _product_modules() -> list[Path]:
    return sorted(
        path
        for package in PRODUCT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.relative_to(ROOT).parts
    )


def _imported_packages(node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.ImportFrom):
        return {(node.module or "").split(".")[0]} if node.level == 0 else {""}
    return {alias.name.split(".")[0] for alias in node.names}


def first_party_imports_in_functions(source: str) -> list[tuple[str, int, bool]]:
    """(function, line, whether the line or the one above it carries a comment) for each first-party import
    inside a function."""
    lines = source.splitlines()
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import | ast.ImportFrom) and _imported_packages(node) & {*FIRST_PARTY, ""}:
                here, above = lines[node.lineno - 1], lines[node.lineno - 2]
                commented = "#" in here or above.strip().startswith("#")
                found.append((function.name, node.lineno, commented))
    return found


def test_no_product_module_imports_our_own_code_inside_a_function():
    offenders = []
    for path in _product_modules():
        relative = path.relative_to(ROOT)
        for function, line, commented in first_party_imports_in_functions(path.read_text()):
            allowed = relative.name == "apps.py" and function == "ready" and commented
            if not allowed:
                offenders.append(f"{relative}:{line} in {function}()")
    assert offenders == [], "first-party imports inside functions (move them to the top):\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f():\n    from billing.pdf import render\n", [("f", 2, False)]),
        ("def f():\n    import sync.models\n", [("f", 2, False)]),
        ("class A:\n    def ready(self):\n        # why\n        from sync import signals\n", [("ready", 4, True)]),
        ("def f():\n    from . import models\n", [("f", 2, False)]),
        ("def f():\n    from weasyprint import HTML\n", []),  # a third-party library may be loaded late
        ("from billing.pdf import render\n\ndef f():\n    return render\n", []),
    ],
)
def test_the_check_finds_first_party_imports_inside_functions_and_nothing_else(source, expected):
    assert first_party_imports_in_functions(source) == expected
