"""Figures shared by the stages: filters, heatmaps, curves.

Weights are drawn blue-white-red with a colour scale symmetric about 0, so that white
always means 0 and the sign of a weight is visible at a glance.
"""
from __future__ import annotations

from typing import Sequence

import os
import sys

import matplotlib

if "ipykernel" not in sys.modules and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")  # stages are headless: figures go to MLflow (notebooks keep their inline backend)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CMAP = "bwr"


def symmetric_limit(*arrays: np.ndarray) -> float:
    m = max(float(np.abs(a).max()) if np.size(a) else 0.0 for a in arrays)
    return m if m > 0 else 1.0


def weights_to_rgb(w: np.ndarray, cell: int = 24, vmax: float | None = None) -> np.ndarray:
    """A 2D weight array (rows, cols) as an upscaled uint8 RGB image (blue < 0 < red)."""
    w = np.asarray(w, dtype=np.float32)
    vmax = vmax or symmetric_limit(w)
    rgba = plt.get_cmap(CMAP)((w / vmax + 1) / 2)  # (rows, cols, 4) in [0, 1]
    img = (rgba[..., :3] * 255).astype(np.uint8)
    return np.kron(img, np.ones((cell, cell, 1), dtype=np.uint8))


MAX_FILTERS_DRAWN = 64  # more filters make an image too tall to draw (and to look at)


def filter_grid_rgb(weights: np.ndarray, cell: int = 8, pad: int = 2) -> np.ndarray:
    """Conv filters as one RGB image for ``mlflow.log_image``.

    At most the first MAX_FILTERS_DRAWN filters (a taller image cannot be drawn). 1D filters (F, C, k):
    one row per filter. 2D filters (F, C, kh, kw): the first input
    channel of each filter (or the RGB filter itself for 3 channels), in a square grid
    separated by white gaps.
    """
    w = np.asarray(weights, dtype=np.float32)[:MAX_FILTERS_DRAWN]
    if w.ndim == 3:  # (F, C, k): rows = filters, columns = taps (channels side by side)
        big = max(cell, 40)
        img = weights_to_rgb(w.transpose(0, 2, 1).reshape(w.shape[0], -1), cell=big)
        img[::big, :] = 160  # grey lines between filters and taps, so cells stay countable
        img[:, ::big] = 160
        return img
    f = w.shape[0]
    cols = int(np.ceil(np.sqrt(f)))
    rows = int(np.ceil(f / cols))
    kh, kw = w.shape[2], w.shape[3]
    scale = max(cell, 48 // max(kh, kw))
    tile_h, tile_w = kh * scale, kw * scale
    out = np.full((rows * (tile_h + pad) + pad, cols * (tile_w + pad) + pad, 3), 255, np.uint8)
    vmax = symmetric_limit(w)
    for i in range(f):
        r, c = divmod(i, cols)
        if w.shape[1] == 3:  # colour filters: map each channel to [0, 255] around grey
            tile = ((w[i].transpose(1, 2, 0) / vmax + 1) / 2 * 255).astype(np.uint8)
            tile = np.kron(tile, np.ones((scale, scale, 1), np.uint8))
        else:
            tile = weights_to_rgb(w[i, 0], cell=scale, vmax=vmax)
        y0, x0 = pad + r * (tile_h + pad), pad + c * (tile_w + pad)
        out[y0 : y0 + tile_h, x0 : x0 + tile_w] = tile
    return out


def heatmaps(panels: Sequence[tuple[str, np.ndarray]], suptitle: str = "", symmetric: Sequence[bool] | None = None,
             xlabel: str = "position"):
    """Side-by-side heatmaps (e.g. X | y_hat | y), one row per example, with colour bars."""
    widths = [max(np.asarray(a).shape[1], 1) for _, a in panels]
    widths = [max(w, 3) for w in widths]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2 + 0.25 * sum(widths) + 1.2 * len(panels), 7),
        gridspec_kw={"width_ratios": widths}, squeeze=False,
    )
    for i, (ax, (title, arr)) in enumerate(zip(axes[0], panels)):
        arr = np.asarray(arr, dtype=np.float32)
        if symmetric is None or symmetric[i]:
            lim = symmetric_limit(arr)
            im = ax.imshow(arr, aspect="auto", cmap=CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
        else:
            top = max(1.0, float(arr.max()))  # probabilities stay on [0, 1]; activations get their range
            im = ax.imshow(arr, aspect="auto", cmap="Greys", vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel(xlabel if arr.shape[1] > 1 else "")
        if arr.shape[1] == 1:
            ax.set_xticks([])
        if i == 0:
            ax.set_ylabel("example")
        else:
            ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.15 if arr.shape[1] <= 3 else 0.05)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def learning_curves(train_loss: Sequence[float], val_loss: Sequence[float], train_accuracy: Sequence[float],
                    val_accuracy: Sequence[float]):
    """Loss (log scale) and accuracy per epoch, training beside validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = np.arange(1, len(train_loss) + 1)
    for ax, kind, train, val in ((axes[0], "loss", train_loss, val_loss),
                                 (axes[1], "accuracy", train_accuracy, val_accuracy)):
        ax.plot(epochs, train, label="train")
        ax.plot(epochs, val, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind)
        ax.legend()
    axes[0].set_yscale("log")
    fig.tight_layout()
    return fig


def compared_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]]):
    """Several runs' curves on one plot: label -> (training loss per epoch, validation accuracy per epoch)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, (train_loss, val_accuracy) in curves.items():
        epochs = np.arange(1, len(train_loss) + 1)
        axes[0].plot(epochs, train_loss, label=label)
        axes[1].plot(epochs, val_accuracy, label=label)
    axes[0].set(yscale="log", xlabel="epoch", ylabel="training loss (log)", title="training loss")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    axes[0].legend()
    fig.tight_layout()
    return fig


def kernel_bars(kernel: np.ndarray, title: str):
    """One 1D kernel as a bar chart (red positive, blue negative)."""
    kernel = np.asarray(kernel).ravel()
    k = kernel.size
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * k, 3))
    ax.bar(range(k), kernel, color=["tab:red" if v > 0 else "tab:blue" for v in kernel])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(k), [str(i - k // 2) for i in range(k)])
    ax.set_xlabel("tap offset")
    ax.set_ylabel("weight")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_figure(cm: np.ndarray, classes: Sequence[str], title: str = "confusion matrix"):
    cm = np.asarray(cm)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(2.5 + 0.5 * n, 2 + 0.5 * n))
    im = ax.imshow(cm, cmap="Blues")
    for (r, c), v in np.ndenumerate(cm):
        ax.text(c, r, str(int(v)), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black", fontsize=8)
    ax.set_xticks(range(n), classes, rotation=45 if n > 2 else 0, ha="right" if n > 2 else "center")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def _as_display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(H, W) or (H, W, 3) array in [0, 1] for imshow from a (C, H, W) image, and its colour map."""
    img = np.asarray(img, dtype=np.float32)
    if img.shape[0] == 3:
        return np.clip(img.transpose(1, 2, 0), 0, 1), None
    return img[0], "gray"


def image_grid(images: np.ndarray, captions: Sequence[str], title: str = "", cols: int = 8, signed: bool = False):
    """Images (N, C, H, W) in a grid, each with a caption (e.g. 'true 3 / pred 5, p=0.02').

    Pixels in [0, 1] are drawn as they are; ``signed`` inputs (e.g. optimised by gradient
    ascent) as their channel mean, blue < 0 < red, each on its own symmetric scale.
    """
    n = len(images)
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), images, captions):
        if signed:
            arr = np.asarray(img).mean(axis=0)
            lim = symmetric_limit(arr)
            ax.imshow(arr, cmap=CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
        else:
            arr, cmap = _as_display(img)
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(cap, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9 if signed else None)
    fig.tight_layout()
    return fig


def feature_maps_figure(image: np.ndarray, maps: np.ndarray, title: str = "", cols: int = 8):
    """One input image (C, H, W) in [0, 1] beside the first layer's feature maps (F, H', W'), blue < 0 < red."""
    f = len(maps)
    cols = max(1, min(cols, f))
    rows = int(np.ceil(f / cols))
    fig, axes = plt.subplots(rows, cols + 1, figsize=(1.6 * (cols + 1), 1.7 * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    arr, cmap = _as_display(image)
    axes[0, 0].imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    axes[0, 0].set_title("input", fontsize=8)
    lim = symmetric_limit(maps)
    for i in range(f):
        ax = axes[i // cols, 1 + i % cols]
        ax.imshow(maps[i], cmap=CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"filter {i}", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def saliency_figure(images: np.ndarray, saliency: np.ndarray, captions: Sequence[str], title: str = ""):
    """Each input (top row) over its saliency map (bottom row, channel max, dark = most influential)."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for i in range(n):
        arr, cmap = _as_display(images[i])
        axes[0, i].imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        axes[0, i].set_title(captions[i], fontsize=7)
        sal = np.asarray(saliency[i]).max(axis=0)
        axes[1, i].imshow(sal, cmap="Greys", vmin=0, vmax=max(float(sal.max()), 1e-12), interpolation="nearest")
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    axes[1, 0].set_title("saliency", fontsize=7, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
