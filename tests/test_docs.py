"""The README is for users and small; dated evidence lives in docs/validation/, whose index lists every run; every
relative link in the README and the index resolves."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
INDEX = REPO / "docs" / "validation" / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text(encoding="utf-8")) if not re.match(r"[a-z]+://", t)]


def test_the_readme_is_small_and_has_the_user_sections():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 15_000
    headings = re.findall(r"^## (.+)$", text, re.M)
    for needed in ("Quick start", "Add a model", "Suites", "Reports", "Release gate", "GPU runs", "Layout"):
        assert any(h.startswith(needed) for h in headings), (needed, headings)
    assert text.count("docs/validation/README.md") == 1  # dated evidence is linked once, never inlined


def test_the_validation_index_lists_every_run():
    linked = {Path(target).parts[0] for target in relative_links(INDEX)}
    runs = {p.name for p in INDEX.parent.iterdir() if p.name != "README.md"}
    assert runs - linked == set()


def test_relative_links_resolve():
    missing = [
        f"{page.relative_to(REPO)}: {target}"
        for page in (README, INDEX)
        for target in relative_links(page)
        if not (page.parent / target).exists()
    ]
    assert missing == []
