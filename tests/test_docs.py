"""The README and docs/: generated tables match their results files, links resolve, the README stays a README.

No Ray, no training: this reads files only (and runs benchmarks/tables.py --check in a
subprocess, which imports benchmarks/speed.py to reuse its report).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TABLES_PY = REPO / "benchmarks" / "tables.py"


def tables_module():
    spec = importlib.util.spec_from_file_location("_dtrain_tables", TABLES_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_match_their_results_files():
    proc = subprocess.run([sys.executable, str(TABLES_PY), "--check"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_a_hand_edited_table_is_caught():
    tables = tables_module()
    page = REPO / "docs" / "algorithms.md"
    text = page.read_text()
    assert tables.render(text) == text
    edited = text.replace("| 8 | sync |", "| 8 | sync (edited) |", 1)
    assert edited != text
    assert tables.render(edited) != edited


def test_every_marker_is_known_and_closed():
    tables = tables_module()
    for page in PAGES:
        text = page.read_text()
        opened = re.findall(r"<!-- table:([a-z0-9-]+) -->", text)
        closed = re.findall(r"<!-- /table:([a-z0-9-]+) -->", text)
        assert opened == closed, f"{page.name}: unbalanced table markers"
        assert len(tables.BLOCK.findall(text)) == len(opened), f"{page.name}: a marker is not on a line of its own"
        for name in opened:
            assert name in tables.TABLES, f"{page.name}: unknown generated table {name!r}"


# ------------------------------------------------------------------ links


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip())
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _prose(page.read_text()), flags=re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no such anchor")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_slugs_follow_github():
    assert _slug("Options of `dtrain submit`") == "options-of-dtrain-submit"
    assert _slug("Modes: async, label skew, federated") == "modes-async-label-skew-federated"
    assert _slug("McMahan et al. (2017) reproduced") == "mcmahan-et-al-2017-reproduced"


# ------------------------------------------------------------------ the README


def test_readme_is_short_and_starts_with_the_quick_start():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 12_500, "the README is for a newcomer: move depth into docs/"
    first_screen = text[: text.index("\n## ", text.index("## Quick start") + 1)]
    assert "pip install -e '.[dev]' && dtrain submit --workers 8" in first_screen
    assert "python -m pytest" in first_screen


def test_readme_cluster_blocks_come_first_after_the_heading():
    """tests/ray_start.py runs the first two bash blocks after "## Cluster" on real clusters."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from ray_start import readme_cluster_blocks
    finally:
        sys.path.pop(0)
    plain, token = readme_cluster_blocks()
    assert plain == ["ray start --head --port 6379", "ray start --address HEAD:6379", "dtrain submit --workers 8"]
    assert token[0] == "export RAY_AUTH_MODE=token" and token[-1] == "dtrain submit --workers 8"
    assert "ray get-auth-token --generate" in token
