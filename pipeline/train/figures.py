"""The figures and images that stage `train` logs: filters over epochs (``filters.py`` draws them),
prediction heatmaps, learning curves.

They are drawn by the helper process of ``pipeline.tracking.drawing`` from arrays computed
here, so that drawing never holds up the training (``pipeline.tracking.figures`` draws the figures).
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.data.bundle import DataBundle
from pipeline.tracking.drawing import FIGURES, Drawing
from pipeline.train.filters import filters_drawing
from pipeline.train.loop import History


def log_filter_image(drawing: Drawing, model: nn.Module, step: int, caption: str = "") -> None:
    """The filters at this epoch as the image ``filters`` (step = epoch): the UI's step slider shows them forming."""
    draw, args = filters_drawing(model)
    drawing.image("filters", step, draw, *args, title=f"epoch {step}{': ' + caption if caption else ''}")


def log_final_filters(drawing: Drawing, model: nn.Module, title: str, prefix: str = "figures") -> None:
    draw, args = filters_drawing(model)
    drawing.image_file(f"{prefix}/filters_final.png", draw, *args, title=title)


@torch.no_grad()
def log_detector_figures(drawing: Drawing, model: nn.Module, bundle: DataBundle, prefix: str = "figures") -> None:
    """1D detector: X | y_hat | y heatmaps for the training set."""
    model = model.eval()
    X = bundle.train.X
    p = torch.sigmoid(model(X)).cpu().numpy()
    drawing.figure(f"{prefix}/predictions_train.png", f"{FIGURES}:heatmaps",
                   [("X (training inputs)", X[:, 0].numpy()), ("ŷ = P(pattern)", p), ("y", bundle.train.y.numpy())],
                   suptitle="training set: inputs, predictions, targets", symmetric=[True, False, False])


@torch.no_grad()
def log_prediction_heatmap(drawing: Drawing, model: nn.Module, bundle: DataBundle, rows: int = 50,
                           prefix: str = "figures") -> None:
    """Images: ŷ (class probabilities) beside one-hot y for the first ``rows`` training examples."""
    model = model.eval()
    X, y = bundle.train.X[:rows], bundle.train.y[:rows]
    p = torch.softmax(model(bundle.input_transform()(X)), dim=1).numpy()  # log-softmax outputs too
    onehot = torch.nn.functional.one_hot(y, len(bundle.classes)).numpy()
    drawing.figure(f"{prefix}/predictions_train.png", f"{FIGURES}:heatmaps",
                   [("ŷ = softmax(model(x))", p), ("y (one-hot)", onehot)],
                   suptitle=f"first {len(y)} training examples: predictions against targets",
                   symmetric=[False, False], xlabel="class")


def log_curves(drawing: Drawing, history: History, prefix: str = "figures") -> None:
    drawing.figure(f"{prefix}/learning_curves.png", f"{FIGURES}:learning_curves", history.train_loss,
                   history.val_loss, history.train_accuracy, history.val_accuracy)
