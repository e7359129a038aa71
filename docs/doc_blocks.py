"""The generated blocks of the Markdown pages (README.md and docs/*.md): find them, replace one, compare.

A block is everything between

    <!-- generated: NAME (python docs/make_figures.py NAME) -->
    ...
    <!-- end generated: NAME -->

and is written only by ``python docs/make_figures.py NAME``; tests/test_docs_numbers.py regenerates the
blocks and fails where a page says something else.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- generated: ([\w-]+) \(python docs/make_figures\.py \1\) -->\n(.*?)<!-- end generated: \1 -->",
                   re.S)


ORDER = ("capacity", "minima", "images", "sweeps", "mlflow-ui", "failures", "development")  # as the README lists them


def pages(root: Path = ROOT) -> list[Path]:
    """README.md, then every page under docs/ in the README's order (others after, by name). The README test
    runs their commands in this order: a page's `<... run id>` is the latest run that the pages before made."""
    rank = {name: i for i, name in enumerate(ORDER)}
    docs = sorted((root / "docs").glob("*.md"), key=lambda p: (rank.get(p.stem, len(rank)), p.name))
    return [root / "README.md", *docs]


def find(root: Path = ROOT) -> dict[str, Path]:
    """Each block's name and the page that holds it (a name appears once in all the pages)."""
    found: dict[str, Path] = {}
    for page in pages(root):
        for name, _ in BLOCK.findall(page.read_text()):
            if name in found:
                raise ValueError(f"generated block {name!r} appears in both {found[name]} and {page}")
            found[name] = page
    return found


def body(text: str, name: str) -> str:
    """The block's text as the page has it."""
    for found, inner in BLOCK.findall(text):
        if found == name:
            return inner
    raise KeyError(f"no generated block {name!r}")


def replace(text: str, name: str, new: str) -> str:
    """The page with the block's text replaced by ``new`` (a trailing newline is added where missing)."""
    new = new if new.endswith("\n") else new + "\n"
    for m in BLOCK.finditer(text):
        if m.group(1) == name:
            return text[:m.start(2)] + new + text[m.end(2):]
    raise KeyError(f"no generated block {name!r}")


def differences(text: str, name: str, new: str) -> list[str]:
    """A unified diff from the page's block to the generated one; empty where they agree."""
    new = new if new.endswith("\n") else new + "\n"
    return list(difflib.unified_diff(body(text, name).splitlines(), new.splitlines(), f"page: {name}",
                                     f"generated: {name}", lineterm=""))


def write(name: str, new: str, root: Path = ROOT) -> Path:
    """Write the generated text into the page that holds the block; returns the page."""
    page = find(root).get(name)
    if page is None:
        raise KeyError(f"no page under {root} has a generated block {name!r}")
    page.write_text(replace(page.read_text(), name, new))
    return page
