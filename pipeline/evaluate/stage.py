"""Stage `evaluate`: score a logged model on fresh data and log what it learned.

Run as ``pipeline evaluate --run-id <train run id>`` (or ``--model-uri runs:/<id>/<name>``), or
``mlflow run . -e evaluate -P run_id=<id>``. Reads the model, and the data options of the
run that logged it (its recipe, data set, data folder, split), so no data options need
repeating; explicit options override them. Writes ``test_loss``, ``test_accuracy``,
confusion counts and figure, and
- for the 1D detector: a prediction heatmap, which filter implements 0, +1, 0 and its kernel,
  and the exact accuracies (``exact.py``): ``exact_accuracy`` over every sequence the generator
  can make, weighted by its probability, ``unseen_accuracy`` over those the run never trained
  on, and the counts ``distinct_sequences``, ``distinct_seen_in_training``,
  ``test_rows_seen_in_training`` (a sampled test set repeats training sequences);
- for image models (on the test split): per-class accuracy (``test_accuracy_class_<i>``
  and a CSV), the easiest and hardest test examples by true-class probability, the first
  layer's feature maps for one input, and the filters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from pipeline.config.stages import EvaluateConfig
from pipeline.data.bundle import DataBundle
from pipeline.errors import ConfigError
from pipeline.evaluate.exact import ExactScores, exact_scores, training_inputs
from pipeline.evaluate.loading import LoadedModel, open_model
from pipeline.evaluate.probes import detector_filter
from pipeline.models.registry import first_conv
from pipeline.tracking import artifacts, provenance, runs, serving
from pipeline.tracking.drawing import FIGURES, Drawing
from pipeline.tracking.metrics import log_metrics
from pipeline.tracking.redact import redact
from pipeline.tracking.rescue import Keep
from pipeline.train.batching import minibatches, place
from pipeline.train.filters import filters_drawing
from pipeline.train.loop import check_channels, correct_count, make_criterion


@dataclass(frozen=True)
class EvalResult:
    run_id: str
    test_loss: float
    test_accuracy: float
    detector_filter: int | None  # 1D detector: index of the 0,+1,0 filter
    detector_kernel: list[float] | None
    exact_accuracy: float | None = None  # 1D detector: over the generator's whole distribution
    unseen_accuracy: float | None = None  # 1D detector: over the sequences the run never trained on


@torch.no_grad()
def _evaluate_binary(model, bundle: DataBundle, echo, drawing: Drawing) -> tuple[float, float, int | None,
                                                                                   list[float] | None]:
    X, y = bundle.train.X, bundle.train.y
    logits = model(X)
    loss = float(make_criterion("bce")(logits, y))
    acc = int(correct_count(logits, y, "binary")) / len(y)
    pred = (logits > 0).float()
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    log_metrics({"true_positives": tp, "true_negatives": tn, "false_positives": fp, "false_negatives": fn})
    cm = np.array([[tn, fp], [fn, tp]])
    drawing.figure("figures/confusion_matrix.png", f"{FIGURES}:confusion_figure", cm, bundle.classes)
    rows = slice(0, min(75, len(y)))
    drawing.figure("figures/test_heatmaps.png", f"{FIGURES}:heatmaps",
                   [("X (test inputs)", X[rows, 0].numpy()), ("ŷ = P(pattern)", torch.sigmoid(logits[rows]).numpy()),
                    ("y", y[rows].numpy())],
                   suptitle=f"test set (first {rows.stop} of {len(y)} rows)", symmetric=[True, False, False])
    idx, kernel = detector_filter(model)
    log_metrics({"detector_filter": idx})
    artifacts.log_dict({"filter": idx, "kernel": [float(v) for v in kernel],
                        "linear_weight": float(model.linear.weight[0, idx])}, "detector_kernel.json")
    drawing.figure("figures/detector_kernel.png", f"{FIGURES}:kernel_bars", kernel,
                   f"filter {idx}: the 0,+1,0 detector")
    taps = ", ".join(f"{v:+.3f}" for v in kernel)
    echo(f"detector filter {idx}: kernel [{taps}]")
    return loss, acc, idx, [float(v) for v in kernel]


def _score_exactly(model, loaded: LoadedModel, model_id: str | None, echo) -> ExactScores:
    """Log (linked to the model) and print the exact and unseen accuracy of the 1D detector (``exact.py``)."""
    X_train = training_inputs(loaded.source_params)
    X_test = loaded.bundle.train.X
    width = X_train.shape[-1] if X_train is not None else X_test.shape[-1]
    scores = exact_scores(model, width, X_train, X_test)
    log_metrics(scores.metrics(), model_id=model_id)
    if X_train is None:
        echo(f"exact_accuracy {scores.exact_accuracy:.4f} (all {scores.distinct_sequences} sequences of width "
             f"{width}, weighted by probability); the training data is unknown, so no unseen_accuracy")
        return scores
    echo(f"exact_accuracy {scores.exact_accuracy:.4f} (all {scores.distinct_sequences} sequences of width {width}, "
         f"weighted by probability)  unseen_accuracy {scores.unseen_accuracy:.4f} (the "
         f"{scores.distinct_sequences - scores.distinct_seen_in_training} never trained on)")
    if scores.test_rows_seen_in_training is not None:
        echo(f"{scores.test_rows_seen_in_training} of the {len(X_test)} test rows repeat one of the "
             f"{scores.distinct_seen_in_training} distinct training sequences")
    return scores


def _log_extremes(logp: torch.Tensor, pred: torch.Tensor, y: torch.Tensor, pixels: torch.Tensor,
                  classes: Sequence[str], examples: int, drawing: Drawing) -> None:
    """Figures of the easiest and hardest test examples: highest and lowest probability given to the true class."""
    p_true = logp.gather(1, y[:, None])[:, 0].exp()  # (N,)
    order = torch.argsort(p_true)
    shown = min(examples, len(y))
    for name, idx in (("hardest", order[:shown]), ("easiest", order.flip(0)[:shown])):
        captions = [f"{classes[int(y[i])]} -> {classes[int(pred[i])]}\np(true)={float(p_true[i]):.2f}" for i in idx]
        drawing.figure(f"figures/{name}_examples.png", f"{FIGURES}:image_grid", pixels[idx].numpy(), captions,
                       title=f"{name} {shown} test examples (true -> predicted, p of the true class)")


@torch.no_grad()
def _evaluate_images(model, bundle: DataBundle, cfg: EvaluateConfig, device: torch.device, echo,
                     drawing: Drawing) -> tuple[float, float]:
    import pandas as pd

    test = bundle.test
    conv = first_conv(model)
    check_channels(conv.in_channels, bundle, "the model")
    built_for = tuple(getattr(model, "input_shape", bundle.input_shape))
    if built_for != bundle.input_shape:
        raise ConfigError(f"the model was built for {'x'.join(map(str, built_for))} images, but {bundle.name} has "
                          f"{'x'.join(map(str, bundle.input_shape))}")
    transform = bundle.input_transform(device)
    X, y = place(test.X, device), place(test.y, device)
    outs = [model(xb).float() for xb, _ in minibatches(X, y, cfg.test_batch_size, device, transform)]
    logp = torch.log_softmax(torch.cat(outs), dim=1).cpu()  # (N, K); log-softmax outputs pass unchanged
    y = test.y
    k = len(bundle.classes)
    if logp.shape[1] != k:
        raise ConfigError(f"the model has {logp.shape[1]} outputs, but {bundle.name} has {k} classes")
    loss = float(torch.nn.functional.nll_loss(logp, y))  # = cross-entropy of the logits
    pred = logp.argmax(dim=1)
    acc = float((pred == y).float().mean())
    cm = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).numpy()  # rows: true, cols: predicted
    per_class = pd.DataFrame({"class": list(bundle.classes), "n": cm.sum(axis=1), "correct": np.diag(cm)})
    per_class["accuracy"] = per_class["correct"] / per_class["n"].clip(lower=1)
    log_metrics({f"test_accuracy_class_{i}": float(a) for i, a in enumerate(per_class["accuracy"])})
    artifacts.log_table(per_class, "per_class_accuracy.csv")
    artifacts.log_table(pd.DataFrame(cm, index=bundle.classes, columns=bundle.classes).reset_index(names="true"),
                       "confusion_matrix.csv")
    drawing.figure("figures/confusion_matrix.png", f"{FIGURES}:confusion_figure", cm, bundle.classes,
                   title=f"{bundle.name} test split")

    pixels = test.X.float() / 255 if test.X.dtype == torch.uint8 else test.X  # what a person sees
    _log_extremes(logp, pred, y, pixels, bundle.classes, cfg.examples, drawing)

    maps = conv(transform(test.X[:1].to(device)))[0].cpu().numpy()  # (F, H', W') of the first test image
    drawing.figure("figures/feature_maps.png", f"{FIGURES}:feature_maps_figure", pixels[0].numpy(), maps,
                   title=f"first-layer feature maps (test image 0, class {bundle.classes[int(y[0])]})")
    draw, args = filters_drawing(model)
    drawing.image_file("figures/filters.png", draw, *args, title="first-layer filters of the evaluated model")
    worst = per_class.sort_values("accuracy").iloc[0]
    echo(f"per-class accuracy from {per_class['accuracy'].min():.3f} ({worst['class']}) to "
         f"{per_class['accuracy'].max():.3f}")
    return loss, acc


def run(cfg: EvaluateConfig, echo: Callable[[str], None] = print) -> EvalResult:
    loaded = open_model(cfg, echo)
    cfg, model, device, bundle = loaded.cfg, loaded.model, loaded.device, loaded.bundle
    binary = bundle.task == "binary"
    source = redact(bundle.meta.get("from") or f"fresh, data seed {cfg.data_seed}")  # --data-uri, or a fresh set
    data = (f"a synthetic set ({len(bundle.train)} rows, {source})" if binary else
            f"the test split of {bundle.name} ({len(bundle.test)} images, {bundle.meta.get('test_from', 'held out')})")
    what = f"Evaluates {loaded.what} on {data}."
    model_id = serving.model_id_of(loaded.uri)  # its test metrics are the model's too
    drawing = Drawing()  # its helper process draws the figures: this one never loads matplotlib
    with runs.stage_run("evaluate", run_name=f"evaluate {loaded.label}", tags=loaded.tags,
                        keep=Keep(config=cfg)) as active, drawing:
        provenance.log_config(cfg)
        provenance.describe(what)
        if binary:
            loss, acc, idx, kernel = _evaluate_binary(model.to("cpu"), bundle, echo, drawing)
            echo(f"test_loss {loss:.4f}  test_accuracy {acc:.4f}  ({len(bundle.train)} rows, {source})")
        else:
            loss, acc = _evaluate_images(model, bundle, cfg, device, echo, drawing)
            idx = kernel = scores = None
            echo(f"test_loss {loss:.4f}  test_accuracy {acc:.4f}  ({len(bundle.test)} test images of "
                 f"{bundle.name}, {bundle.meta.get('test_from', 'test split')})")
        # the Models tab compares models by them: logged first, they are its first metric columns
        log_metrics({"test_accuracy": acc, "test_loss": loss}, model_id=model_id)
        found = ""
        if binary:
            scores = _score_exactly(model, loaded, model_id, echo)
            found = (f"; exact accuracy {scores.exact_accuracy:.4f}, on the sequences it never trained on "
                     f"{scores.unseen_accuracy:.4f}; the 0,+1,0 detector is filter {idx}")
        provenance.describe(what, f"Test loss {loss:.4f}, test accuracy {acc:.4f}{found}.")
        return EvalResult(active.info.run_id, loss, acc, idx, kernel,
                          scores.exact_accuracy if scores else None, scores.unseen_accuracy if scores else None)
