"""The figures and images that stage `train` logs: filters over epochs (``filters.py`` draws them),
prediction heatmaps, learning curves."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.data.bundle import DataBundle
from pipeline.tracking.artifacts import log_figure
from pipeline.train.filters import filters_image
from pipeline.train.loop import History


def log_filter_image(model: nn.Module, step: int, caption: str = "") -> None:
    """The filters at this epoch as the image ``filters`` (step = epoch): the UI's step slider shows them forming."""
    import mlflow

    rgb = filters_image(model, title=f"epoch {step}{': ' + caption if caption else ''}")
    mlflow.log_image(rgb, key="filters", step=step, synchronous=True)


def log_final_filters(model: nn.Module, title: str, prefix: str = "figures") -> None:
    import mlflow

    mlflow.log_image(filters_image(model, title=title), artifact_file=f"{prefix}/filters_final.png")


@torch.no_grad()
def log_detector_figures(model: nn.Module, bundle: DataBundle, prefix: str = "figures") -> None:
    """1D detector: X | y_hat | y heatmaps for the training set."""
    from pipeline import figures

    model = model.eval()
    X = bundle.train.X
    p = torch.sigmoid(model(X)).cpu().numpy()
    fig = figures.heatmaps(
        [("X (training inputs)", X[:, 0].numpy()), ("ŷ = P(pattern)", p), ("y", bundle.train.y.numpy())],
        suptitle="training set: inputs, predictions, targets",
        symmetric=[True, False, False],
    )
    log_figure(fig, f"{prefix}/predictions_train.png")


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
    log_figure(fig, f"{prefix}/predictions_train.png")


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
    log_figure(fig, f"{prefix}/learning_curves.png")
