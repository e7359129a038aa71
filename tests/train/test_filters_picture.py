"""The filter picture stays readable (and drawable) for any layer width: a wide layer shows its
first filters and says how many there are (``--filters 100000`` once killed the drawing with a
picture of 23 GB)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.train.filters import MAX_SHOWN, detector_image, grid_image


@pytest.mark.parametrize("f", [3, MAX_SHOWN, 10_000])
def test_detector_picture_is_bounded(f):
    rng = np.random.default_rng(0)
    w, lin = rng.normal(size=(f, 1, 5)), rng.normal(size=(1, f))
    img = detector_image(w, lin, title="filters")
    small = detector_image(w[:3], lin[:, :3], title="filters")
    rows = min(f, MAX_SHOWN)
    assert img.shape[1] == 800 and img.dtype == np.uint8
    assert img.shape[0] == small.shape[0] + (rows - 3) * 96  # one 96 px row per filter shown


@pytest.mark.parametrize("f", [8, MAX_SHOWN, 5_000])
def test_grid_picture_is_bounded(f):
    w = np.random.default_rng(1).normal(size=(f, 1, 3, 3))
    img = grid_image(w, title="filters")
    assert img.shape == grid_image(w[:MAX_SHOWN], title="filters").shape
    assert img.shape[0] < 1200


def test_the_title_says_that_filters_were_left_out():
    from pipeline.train.filters import _first_shown

    w = np.zeros((100, 1, 5))
    shown, title = _first_shown(w, "after 5 epochs")
    assert len(shown) == MAX_SHOWN and title == f"after 5 epochs (filters 0-{MAX_SHOWN - 1} of 100)"
    shown, title = _first_shown(w[:10], "t")
    assert len(shown) == 10 and title == "t"
