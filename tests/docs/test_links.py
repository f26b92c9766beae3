"""The README and docs/ point only at files the repository has, and the spec copies match the product's specs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
SHARED_SPEC = ROOT.parent / "shared" / "spec"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_in_the_repository(page: Path) -> None:
    text = page.read_text()
    targets = [target for target in LINK.findall(text) if "://" not in target and not target.startswith("mailto:")]

    missing = [target for target in targets if not (page.parent / target).resolve().is_relative_to(ROOT)]
    missing += [target for target in targets if not (page.parent / target).exists()]
    assert missing == []
    assert "../shared/spec" not in text


@pytest.mark.parametrize("name", ["architecture.md", "billing.md", "calendar-rules.md", "mbn-api.md"])
def test_the_spec_copies_are_the_product_specs(name: str) -> None:
    if not SHARED_SPEC.is_dir():
        pytest.skip("no shared/spec beside this checkout to compare with")
    assert (ROOT / "docs" / "spec" / name).read_text() == (SHARED_SPEC / name).read_text()
