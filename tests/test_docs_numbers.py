"""The numbers README.md and docs/*.md quote are what the code computes now.

Each generated block (``<!-- generated: NAME (python docs/make_figures.py NAME) -->``) is rewritten by its
function in docs/doc_numbers.py into a copy of the pages in a temporary folder, and the copy must equal the
committed page. The fast blocks run in the default suite; the slow ones (minutes of training) under -m slow.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "docs"))
import doc_blocks  # noqa: E402  (docs/ is not a package)
import doc_numbers  # noqa: E402

FAST = [name for name in doc_numbers.BLOCKS if name not in doc_numbers.SLOW]


@pytest.fixture(scope="module")
def copy_of_pages(tmp_path_factory) -> Path:
    """README.md and docs/*.md copied to a temporary folder, where the blocks are rewritten."""
    root = tmp_path_factory.mktemp("pages")
    (root / "docs").mkdir()
    for page in doc_blocks.pages(REPO):
        shutil.copy(page, root / page.relative_to(REPO))
    return root


def regenerated_differences(name: str, root: Path) -> list[str]:
    """Write the freshly generated block into the copied page; the diff from the committed page."""
    page = doc_blocks.write(name, doc_numbers.BLOCKS[name](), root)
    committed = (REPO / page.relative_to(root)).read_text()
    return doc_blocks.differences(committed, name, doc_blocks.body(page.read_text(), name))


def test_every_block_has_a_function_and_every_function_a_block():
    assert sorted(doc_blocks.find(REPO)) == sorted(doc_numbers.BLOCKS)
    assert set(doc_numbers.SLOW) <= set(doc_numbers.BLOCKS)


def test_no_block_is_empty():
    for name, page in doc_blocks.find(REPO).items():
        assert doc_blocks.body(page.read_text(), name).strip(), f"{name} in {page} is empty"


def test_a_changed_number_makes_the_comparison_fail():
    """The comparison sees one digit changed inside a block, and nothing outside blocks."""
    page = doc_blocks.find(REPO)["p-success-grid"]
    text = page.read_text()
    block = doc_blocks.body(text, "p-success-grid")
    assert doc_blocks.differences(text, "p-success-grid", block) == []
    changed = block.replace("0.130 [0.090", "0.131 [0.090", 1)
    assert changed != block
    diff = doc_blocks.differences(doc_blocks.replace(text, "p-success-grid", changed), "p-success-grid", block)
    assert "-| 1 | 0.040 [0.020, 0.077] | 0.131 [0.090, 0.184] | 0.115 [0.078, 0.167] |" in diff
    assert "+| 1 | 0.040 [0.020, 0.077] | 0.130 [0.090, 0.184] | 0.115 [0.078, 0.167] |" in diff


def test_replace_touches_only_its_block():
    text = ("a 1\n<!-- generated: x (python docs/make_figures.py x) -->\nold 2\n<!-- end generated: x -->\n"
            "b 3\n<!-- generated: y (python docs/make_figures.py y) -->\nold 4\n<!-- end generated: y -->\n")
    new = doc_blocks.replace(text, "y", "new 5")
    assert new == text.replace("old 4", "new 5")
    assert doc_blocks.body(new, "x") == "old 2\n" and doc_blocks.differences(new, "x", "old 2") == []
    with pytest.raises(KeyError):
        doc_blocks.replace(text, "z", "anything")


def test_timings_are_outside_the_blocks():
    """Timings are quoted with their machine and not compared: no block says 'seconds' or 'N s'."""
    for name, page in doc_blocks.find(REPO).items():
        assert not re.search(r"\d s\b|seconds", doc_blocks.body(page.read_text(), name)), name


@pytest.mark.parametrize("name", FAST)
def test_fast_blocks_say_what_the_code_computes(name, copy_of_pages):
    assert regenerated_differences(name, copy_of_pages) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(doc_numbers.SLOW))
def test_slow_blocks_say_what_the_code_computes(name, copy_of_pages):
    """Slow: each of these reruns a study of minutes (see doc_numbers.SLOW for which)."""
    if name == "mnist-chance" and not doc_numbers.MNIST.is_dir():
        pytest.skip(f"{doc_numbers.MNIST} is missing (set PIPELINE_MNIST_DIR to MNIST's IDX folder)")
    assert regenerated_differences(name, copy_of_pages) == []
