"""The first layer's filters as a picture a person can read: one labelled panel per filter, on
one diverging colour scale (blue < 0 < red, white = 0) with a colour bar, 800 px wide.

``train`` logs it every ``--image-every`` epochs as ``log_image(key="filters", step=epoch)``
(the MLflow UI's step slider shows the filters forming) and at the end as
``figures/filters_final.png``. For the 1D detector each filter is a row: its taps as a
heatmap strip and, beside it, as bars annotated with their values, and the weight that the
linear layer gives the filter. Drawn with PIL rather than matplotlib: a picture every few
epochs must cost milliseconds, not the half second of a matplotlib figure.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH = 800  # px; the UI fits the image card to its column, and below ~600 px the labels blur
MARGIN = 12
COLORBAR_W = 18
COLORBAR_LABELS = 52  # room for the colour bar's tick labels
BLACK, GREY, LIGHT = (0, 0, 0), (120, 120, 120), (225, 225, 225)
MAX_SHOWN = 64  # filters drawn; a wider layer shows its first 64 (and says so): the picture stays readable


def _first_shown(w: np.ndarray, title: str) -> tuple[np.ndarray, str]:
    """The filters that fit the picture, and the title that says when some are left out."""
    if len(w) <= MAX_SHOWN:
        return w, title
    return w[:MAX_SHOWN], f"{title} (filters 0-{MAX_SHOWN - 1} of {len(w)})".lstrip()


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib) at ``size`` px; PIL's own font where it is missing."""
    from matplotlib import font_manager

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:
        return ImageFont.load_default(size)


def colours(values: np.ndarray, lim: float) -> np.ndarray:
    """uint8 RGB of ``values`` on the shared diverging scale [-lim, lim] (matplotlib's bwr)."""
    from matplotlib import colormaps

    rgba = colormaps["bwr"](np.clip((np.asarray(values, dtype=np.float64) / lim + 1) / 2, 0, 1))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, anchor: str = "mm",
          fill: tuple[int, int, int] = BLACK) -> None:
    draw.text(xy, text, font=font(size), anchor=anchor, fill=fill)


def _colorbar(draw: ImageDraw.ImageDraw, x: int, top: int, bottom: int, lim: float) -> None:
    """A vertical colour bar from +lim (top) to -lim (bottom) with five tick labels and its name."""
    rows = colours(np.linspace(lim, -lim, max(bottom - top, 2)), lim)
    for i, rgb in enumerate(rows):
        draw.line([(x, top + i), (x + COLORBAR_W, top + i)], fill=tuple(int(c) for c in rgb))
    draw.rectangle([x, top, x + COLORBAR_W, bottom], outline=GREY)
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + frac * (bottom - top)
        draw.line([(x + COLORBAR_W, y), (x + COLORBAR_W + 4, y)], fill=BLACK)
        _text(draw, (x + COLORBAR_W + 6, y), f"{lim * (1 - 2 * frac):+.2f}", 11, anchor="lm")
    _text(draw, (x + COLORBAR_W // 2, top - 10), "weight", 11)


def _limit(w: np.ndarray) -> float:
    m = float(np.abs(w).max()) if w.size else 0.0
    return m if m > 0 else 1.0


def detector_image(conv_w: np.ndarray, linear_w: np.ndarray | None = None, title: str = "") -> np.ndarray:
    """1D filters (F, 1, k) as an (H, 800, 3) image: per filter its index, the linear layer's weight for
    it, its taps as a heatmap strip and as annotated bars."""
    w, title = _first_shown(np.asarray(conv_w, dtype=np.float32)[:, 0, :], title)  # (F, k)
    f, k = w.shape
    lin = None if linear_w is None else np.asarray(linear_w, dtype=np.float32).reshape(-1)[:f]  # (F,)
    lim = _limit(w)
    label_w, row_h, gap, head = 120, 96, 8, 70  # tall rows: MLflow's card shows a 256 px thumbnail
    plot_w = WIDTH - 2 * MARGIN - label_w - COLORBAR_W - COLORBAR_LABELS - 3 * gap
    heat_w = int(plot_w * 0.42)
    bars_w = plot_w - heat_w - 2 * gap
    heat_x = MARGIN + label_w
    bars_x = heat_x + heat_w + 2 * gap
    height = head + f * row_h + 40
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    _text(draw, (WIDTH / 2, 18), title, 18)
    _text(draw, (heat_x + heat_w / 2, head - 14), "taps", 14)
    _text(draw, (bars_x + bars_w / 2, head - 14), "the same taps as bars, with their values", 14)
    cell = heat_w / k
    scale = (row_h / 2 - 16) / lim  # px per unit weight in the bars
    cols = colours(w, lim)
    for i in range(f):
        top = head + i * row_h
        mid = top + row_h / 2
        _text(draw, (heat_x - 8, mid - (10 if lin is not None else 0)), f"filter {i}", 17, anchor="rm")
        if lin is not None:
            _text(draw, (heat_x - 8, mid + 11), f"out {lin[i]:+.2f}", 13, anchor="rm", fill=GREY)
        draw.rectangle([bars_x, top + 2, bars_x + bars_w, top + row_h - 3], outline=LIGHT)
        draw.line([(bars_x, mid), (bars_x + bars_w, mid)], fill=BLACK)
        for j in range(k):
            rgb = tuple(int(c) for c in cols[i, j])
            draw.rectangle([heat_x + j * cell, top + 2, heat_x + (j + 1) * cell - 1, top + row_h - 3], fill=rgb)
            cx = bars_x + (j + 0.5) * bars_w / k
            end = mid - w[i, j] * scale
            half = 0.36 * bars_w / k
            draw.rectangle([cx - half, min(mid, end), cx + half, max(mid, end)], fill=rgb, outline=GREY)
            below = w[i, j] < 0
            _text(draw, (cx, end + (2 if below else -2)), f"{w[i, j]:+.2f}", 12, anchor="mt" if below else "mb")
    bottom = head + f * row_h
    for j in range(k):
        for x0, width in ((heat_x, heat_w), (bars_x, bars_w)):
            _text(draw, (x0 + (j + 0.5) * width / k, bottom + 8), str(j - k // 2), 11)
    _text(draw, (heat_x + heat_w / 2, bottom + 26), "tap offset", 11)
    _text(draw, (bars_x + bars_w / 2, bottom + 26), "tap offset", 11)
    _colorbar(draw, WIDTH - MARGIN - COLORBAR_W - COLORBAR_LABELS, head, bottom - 3, lim)
    return np.asarray(img)


def grid_image(conv_w: np.ndarray, title: str = "") -> np.ndarray:
    """2D filters (F, C, kh, kw) as an (H, 800, 3) image: a grid of panels, each with its index
    (input channel 0 on the diverging scale; 3-channel filters as colours around grey)."""
    w, title = _first_shown(np.asarray(conv_w, dtype=np.float32), title)
    f, c, kh, kw = w.shape
    rgb_filters = c == 3
    lim = _limit(w)
    cols = min(f, 8)
    rows = int(np.ceil(f / cols))
    gap, label_h, head = 10, 16, 36
    room = WIDTH - 2 * MARGIN - (0 if rgb_filters else COLORBAR_W + COLORBAR_LABELS + gap)
    panel_w = (room - (cols - 1) * gap) // cols
    panel_h = max(int(panel_w * kh / kw), 8)
    height = head + rows * (panel_h + label_h + gap) + MARGIN
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    note = " (RGB, grey = 0)" if rgb_filters else (" (input channel 0)" if c > 1 else "")
    _text(draw, (WIDTH / 2, 16), title + note, 15)
    for i in range(f):
        r, col = divmod(i, cols)
        x = MARGIN + col * (panel_w + gap)
        y = head + r * (panel_h + label_h + gap)
        _text(draw, (x + panel_w / 2, y + label_h / 2), str(i), 11)
        if rgb_filters:
            tile = (np.clip((w[i].transpose(1, 2, 0) / lim + 1) / 2, 0, 1) * 255).astype(np.uint8)
        else:
            tile = colours(w[i, 0], lim)
        img.paste(Image.fromarray(tile).resize((panel_w, panel_h), Image.NEAREST), (x, y + label_h))
        draw.rectangle([x, y + label_h, x + panel_w - 1, y + label_h + panel_h - 1], outline=LIGHT)
    if not rgb_filters:
        _colorbar(draw, WIDTH - MARGIN - COLORBAR_W - COLORBAR_LABELS, head + label_h,
                  height - MARGIN - gap, lim)
    return np.asarray(img)


def filters_drawing(model) -> tuple[Callable[..., np.ndarray], tuple]:
    """How to draw the first conv layer of ``model``: the drawing function (the detector layout for
    the 1D detector) and its arguments, plain arrays, so that another process can draw it."""
    from pipeline.models.registry import first_conv

    w = first_conv(model).weight.detach().cpu().numpy()
    if w.ndim == 3:
        linear = getattr(model, "linear", None)
        return detector_image, (w, None if linear is None else linear.weight.detach().cpu().numpy())
    return grid_image, (w,)
