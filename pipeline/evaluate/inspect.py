"""Stage `inspect`: look inside a trained model and log what it learned.

Run as ``pipeline inspect --run-id <train run id>`` (or ``--model-uri runs:/<id>/<name>``), or
``mlflow run . -e inspect -P run_id=<id>``. Reads the model and, like evaluate, the data of
the run that trained it. Writes, for every model: activation maximisation (the input that
each first-layer filter (the first 64) and each output wants most, by gradient ascent from noise inside
an L2 ball) and its gains; for image models: saliency maps of the easiest and hardest test
examples and each first-layer filter's best cosine similarity to a Sobel kernel (with an
untrained layer of the same shape for comparison); for the 1D detector: which filter
implements 0, +1, 0, its kernel, and its activation along each training input.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from pipeline.tracking import figures
from pipeline.tracking.figures import MAX_FILTERS_DRAWN
from pipeline.config.stages import InspectConfig
from pipeline.data.synthetic import make_synthetic
from pipeline.evaluate import probes
from pipeline.evaluate.loading import open_model
from pipeline.models.registry import first_conv
from pipeline.tracking import artifacts, provenance, runs
from pipeline.tracking.metrics import log_metrics
from pipeline.tracking.rescue import Keep


@dataclass(frozen=True)
class InspectResult:
    run_id: str
    actmax: pd.DataFrame  # target, start, final activation
    sobel: pd.DataFrame | None  # image models: filter, best_similarity, best_match
    sobel_untrained_mean: float | None  # same-shaped freshly initialised layer


def untrained_like(conv: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy of ``conv`` with PyTorch's default initialisation (the 'before training' reference)."""
    fresh = copy.deepcopy(conv)
    torch.manual_seed(seed)
    fresh.reset_parameters()
    return fresh


def activation_maximisation(model, input_shape, radius: float, cfg: InspectConfig, n_outputs: int):
    conv = first_conv(model)
    shown = min(conv.out_channels, MAX_FILTERS_DRAWN)  # each target runs the whole layer: cost grows as F^2
    targets = [probes.first_layer_target(model, i) for i in range(shown)]
    names = [f"filter {i}" for i in range(shown)]
    targets += [probes.class_target(model, c) for c in range(n_outputs)]
    names += [f"output {c}" for c in range(n_outputs)]
    result = probes.maximise(targets, tuple(input_shape), radius=radius, steps=cfg.steps, lr=cfg.ascent_lr)
    table = pd.DataFrame({"target": names, "start": result.start, "final": result.final})
    table["gain"] = table["final"] / table["start"].abs().clip(lower=1e-6)
    return result, table


def _log_actmax(result, table: pd.DataFrame, n_filters: int, class_names) -> None:
    x = result.inputs.numpy()
    artifacts.log_table(table, "inspect/activation_maximisation.csv")
    log_metrics({"actmax_median_gain_filters": float(table["gain"][:n_filters].median()),
                 "actmax_median_gain_outputs": float(table["gain"][n_filters:].median())})
    if x.ndim == 4:  # images: show each optimised input, blue < 0 < red
        for name, part, captions in (
            ("filters", x[:n_filters], [f"filter {i}" for i in range(n_filters)]),
            ("classes", x[n_filters:], [f"class {c}" for c in class_names]),
        ):
            fig = figures.image_grid(part, captions, title=f"inputs that maximise each {name[:-1]} "
                                                       f"(gradient ascent from noise, L2 ball)", signed=True)
            artifacts.log_figure(fig, f"inspect/activation_max_{name}.png")
    else:  # 1D: one row per target
        fig = figures.heatmaps([("optimised input", x[:, 0])], suptitle="inputs that maximise each filter "
                             "(rows 0..F-1) and the output (last row)")
        artifacts.log_figure(fig, "inspect/activation_max.png")


def _inspect_images(model, bundle, cfg: InspectConfig, device, echo) -> tuple[pd.DataFrame, float]:
    test = bundle.test
    transform = bundle.input_transform(device)
    X = transform(test.X[:1000].to(device))
    y = test.y[:1000].to(device)
    with torch.no_grad():
        logp = torch.log_softmax(model(X).float(), dim=1)
    p_true = logp.gather(1, y[:, None])[:, 0].exp()
    order = torch.argsort(p_true)
    n = min(cfg.saliency_examples, len(y))
    pixels = (test.X[:1000].float() / 255 if test.X.dtype == torch.uint8 else test.X[:1000]).numpy()
    for name, idx in (("hardest", order[:n]), ("easiest", order.flip(0)[:n])):
        sal = probes.saliency(model, X[idx]).cpu().numpy()
        fig = figures.saliency_figure(pixels[idx.cpu().numpy()], sal,
                                    [f"{bundle.classes[int(y[i])]} p={float(p_true[i]):.2f}" for i in idx],
                                    title=f"saliency |d score / d input| of the {name} {n} test examples")
        artifacts.log_figure(fig, f"inspect/saliency_{name}.png")
    conv = first_conv(model)
    sobel = pd.DataFrame(probes.sobel_scores(conv.weight.detach().cpu().numpy()))
    untrained = pd.DataFrame(probes.sobel_scores(untrained_like(conv).weight.detach().cpu().numpy()))
    artifacts.log_table(sobel, "inspect/sobel_scores.csv")
    trained_mean, untrained_mean = float(sobel["best_similarity"].mean()), float(untrained["best_similarity"].mean())
    log_metrics({"sobel_mean_best_similarity": trained_mean, "sobel_mean_untrained": untrained_mean})
    echo(f"Sobel similarity of first-layer filters: trained {trained_mean:.3f}, untrained {untrained_mean:.3f}")
    return sobel, untrained_mean


def _inspect_detector(model, src_params: dict[str, str], echo) -> None:
    idx, kernel = probes.detector_filter(model)
    n = int(float(src_params.get("n", 75)))
    width = int(float(src_params.get("width", 20)))
    data_seed = int(float(src_params.get("data_seed", 0)))
    X, y = make_synthetic(n, width, data_seed)  # the training inputs of the run that made the model
    act = probes.detector_activations(model, X, idx)
    log_metrics({"detector_filter": idx})
    artifacts.log_figure(figures.kernel_bars(kernel, f"filter {idx}: the 0,+1,0 detector"), "inspect/detector_kernel.png")
    fig = figures.heatmaps([("X (training inputs)", X[:, 0].numpy()), (f"ReLU(filter {idx})", act),
                          ("y", y.numpy())], suptitle="the detector filter's activation along each training input",
                         symmetric=[True, False, False])
    artifacts.log_figure(fig, "inspect/detector_activations.png")
    pos, neg = act[y[:, 0] == 1].max(axis=1), act[y[:, 0] == 0].max(axis=1)
    log_metrics({"detector_peak_positive": float(pos.mean()) if len(pos) else 0.0,
                 "detector_peak_negative": float(neg.mean()) if len(neg) else 0.0})
    echo(f"detector filter {idx}: mean peak activation {pos.mean():.3f} on positives, {neg.mean():.3f} on negatives")


def run(cfg: InspectConfig, echo: Callable[[str], None] = print) -> InspectResult:
    loaded = open_model(cfg, echo)
    cfg, model, device, bundle = loaded.cfg, loaded.model, loaded.device, loaded.bundle
    for p in model.parameters():
        p.requires_grad_(False)  # gradients flow to the inputs only
    binary = bundle.task == "binary"
    split = bundle.train if binary else bundle.test
    inputs = split.X.float() / 255 if split.X.dtype == torch.uint8 else split.X
    if not binary:
        inputs = bundle.input_transform("cpu")(split.X[:1000])
    radius = cfg.radius or float(inputs.flatten(1).norm(dim=1).mean())
    with runs.stage_run("inspect", run_name=f"inspect {loaded.label}", tags=loaded.tags,
                        keep=Keep(config=cfg)) as active:
        provenance.log_config(cfg, resolved_radius=radius)
        provenance.describe(f"Looks inside {loaded.what}: the inputs that excite each filter and output most "
                            f"(activation maximisation, {cfg.steps} steps in an L2 ball of radius {radius:.2f})"
                            + (", saliency and Sobel scores." if not binary else ", the 0,+1,0 filter."))
        model = model.to(device)
        n_out = 1 if binary else len(bundle.classes)
        result, table = activation_maximisation(model, bundle.input_shape, radius, cfg, n_out)
        _log_actmax(result, table, min(first_conv(model).out_channels, MAX_FILTERS_DRAWN),
                    ["0,+1,0"] if binary else bundle.classes)
        echo(f"activation maximisation (radius {radius:.2f}, {cfg.steps} steps): median gain "
             f"{table['gain'].median():.1f}x over the noise start")
        sobel, untrained = (None, None)
        if binary:
            _inspect_detector(model.cpu(), loaded.source_params, echo)
        elif first_conv(model).weight.ndim == 4:
            sobel, untrained = _inspect_images(model, bundle, cfg, device, echo)
        return InspectResult(active.info.run_id, table, sobel, untrained)
