"""Every relative link of README.md and docs/*.md (text and images) leads to a file, and its #anchor to a heading."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "docs"))
from doc_blocks import pages  # noqa: E402  (docs/ is not a package)

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)  # links inside code are not links


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", CODE.sub("", text), re.M)}


def broken_links(page: Path) -> list[str]:
    """The page's relative links whose file is missing, or whose #anchor names no heading of that file."""
    broken = []
    for target in LINK.findall(CODE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            broken.append(f"{target}: no file {file}")
        elif anchor and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", pages(REPO), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    for page in pages(REPO)[1:]:
        assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# A Title: with punctuation\n## Second one\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-title-with-punctuation) ![img](missing.png) [bad](other.md#nope)\n"
                    "[self](#here) `[in code](nowhere.md)` [web](https://example.com/x.md)\n# Here\n")
    assert broken_links(page) == [f"missing.png: no file {tmp_path / 'missing.png'}",
                                  "other.md#nope: no heading #nope in other.md"]
