"""The figures and images that stage `train` logs: filters over epochs, heatmaps, curves."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.data.bundle import DataBundle
from pipeline.models.registry import first_conv
from pipeline.tracking.artifacts import log_figure
from pipeline.train.loop import History


def log_filter_image(model: nn.Module, step: int) -> None:
    import mlflow

    from pipeline.figures import filter_grid_rgb

    w = first_conv(model).weight.detach().cpu().numpy()
    mlflow.log_image(filter_grid_rgb(w), key="filters", step=step, synchronous=True)


@torch.no_grad()
def log_detector_figures(model: nn.Module, bundle: DataBundle, prefix: str = "figures") -> None:
    """1D detector: X | y_hat | y heatmaps for the training set, and filters beside linear weights."""
    from pipeline import figures

    model = model.eval()
    X = bundle.train.X
    p = torch.sigmoid(model(X)).cpu().numpy()
    fig = figures.heatmaps(
        [("X (training inputs)", X[:, 0].numpy()), ("ŷ = P(pattern)", p), ("y", bundle.train.y.numpy())],
        suptitle="training set: inputs, predictions, targets",
        symmetric=[True, False, False],
    )
    log_figure(fig, f"{prefix}/train_heatmaps.png")
    fig = figures.filters_and_linear(model.conv.weight.cpu().numpy(), model.linear.weight.cpu().numpy(),
                                   title="filters (rows) and their linear weights")
    log_figure(fig, f"{prefix}/filters_linear.png")


@torch.no_grad()
def log_prediction_heatmap(model: nn.Module, bundle: DataBundle, rows: int = 50, prefix: str = "figures") -> None:
    """Images: ŷ (class probabilities) beside one-hot y for the first ``rows`` training examples."""
    from pipeline import figures

    model = model.eval()
    X, y = bundle.train.X[:rows], bundle.train.y[:rows]
    p = torch.softmax(model(bundle.input_transform()(X)), dim=1).numpy()  # log-softmax outputs too
    onehot = torch.nn.functional.one_hot(y, len(bundle.classes)).numpy()
    fig = figures.heatmaps([("ŷ = softmax(model(x))", p), ("y (one-hot)", onehot)],
                         suptitle=f"first {len(y)} training examples: predictions against targets",
                         symmetric=[False, False], xlabel="class")
    log_figure(fig, f"{prefix}/train_heatmaps.png")


def log_curves(history: History, prefix: str = "figures") -> None:
    from pipeline.figures import plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = np.arange(1, len(history.train_loss) + 1)
    for ax, kind in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, getattr(history, f"train_{kind}"), label="train")
        ax.plot(epochs, getattr(history, f"val_{kind}"), label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind)
        ax.legend()
    axes[0].set_yscale("log")
    fig.tight_layout()
    log_figure(fig, f"{prefix}/curves.png")
