"""Stage `prepare-data`: build a data set once and log it for the other stages.

Run as ``pipeline prepare-data [--n 75 --width 20 --data-seed 0]``, ``pipeline prepare-data
--dataset digits`` (or ``--dataset mnist --data-dir ...``), or ``mlflow run . -e
prepare_data``. Reads the synthetic generator's options, or an image data set (a
torchvision root, a folder of IDX files, an .npz file, digits). Writes the tensors
(``data/data.pt`` with train, validation and, for images, test splits; read by ``train
--data-uri runs:/<id>/data``), a dataset input, class counts, and a picture: X beside y for
the 1D data, a grid of sample images for image data.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.config.recipes import resolve
from pipeline.config.stages import PrepareDataConfig
from pipeline.data.bundle import DataBundle
from pipeline.data.io import log_bundle_artifact, log_bundle_input
from pipeline.data.load import load_bundle
from pipeline.tracking import artifacts, provenance, runs
from pipeline.tracking.drawing import FIGURES, Drawing
from pipeline.tracking.metrics import log_metrics
from pipeline.tracking.rescue import Keep


@dataclass(frozen=True)
class PrepareResult:
    run_id: str
    data_uri: str  # runs:/<id>/data, for train --data-uri
    bundle: DataBundle


def class_counts(bundle: DataBundle) -> dict[str, int]:
    y = bundle.train.y.numpy().ravel().astype(int)
    counts = np.bincount(y, minlength=len(bundle.classes))
    return {name: int(c) for name, c in zip(bundle.classes, counts)}


def log_data_picture(drawing: Drawing, bundle: DataBundle) -> None:
    """The training set as a picture, drawn by ``drawing``'s helper process (this one never loads matplotlib)."""
    if bundle.train.X.ndim == 3:  # 1D sequences: heatmap of X beside y
        drawing.figure("figures/data.png", f"{FIGURES}:heatmaps",
                       [("X", bundle.train.X[:, 0].numpy()), ("y", bundle.train.y.numpy())],
                       suptitle=f"{bundle.name}: training set ({len(bundle.train)} rows)", symmetric=[True, False])
    else:  # images: the first 32 training images with their labels
        X, y = bundle.train.X[:32], bundle.train.y[:32]
        pixels = X.float() / 255 if X.dtype == torch.uint8 else X
        drawing.figure("figures/samples.png", f"{FIGURES}:image_grid", pixels.numpy(),
                       [bundle.classes[int(c)] for c in y],
                       title=f"{bundle.name}: first {len(y)} of {len(bundle.train)} training images")


def run(cfg: PrepareDataConfig, echo: Callable[[str], None] = print) -> PrepareResult:
    cfg = resolve(cfg)
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    bundle = load_bundle(cfg)
    if bundle.meta.get("data_dir"):  # an absolute path, so later stages find it from anywhere
        cfg = dataclasses.replace(cfg, data_dir=str(Path(cfg.data_dir).expanduser().resolve()))
    drawing = Drawing()  # its helper process loads matplotlib while this one saves the data
    with runs.stage_run("prepare-data", run_name=f"prepare-data {bundle.name}",
                        tags={"recipe": cfg.recipe, "dataset": bundle.name},
                        keep=Keep(config=cfg, data=bundle)) as active, drawing:
        provenance.log_config(cfg)
        data_uri = log_bundle_artifact(bundle)
        log_bundle_input(bundle, context="training")
        counts = class_counts(bundle)
        artifacts.log_dict(counts, "class_counts.json")
        sizes = {"n_train": len(bundle.train), "n_val": len(bundle.val)}
        if bundle.test is not None:
            sizes["n_test"] = len(bundle.test)
        log_metrics({**sizes, **{f"count_class_{i}": c for i, c in enumerate(counts.values())}})
        log_data_picture(drawing, bundle)
        test = f" / {len(bundle.test)} test" if bundle.test is not None else ""
        echo(f"prepared {bundle.name}: {len(bundle.train)} train / {len(bundle.val)} val{test} rows, "
             f"class counts {counts} -> {data_uri}")
        provenance.describe(f"Builds the {bundle.name} data set once for the stages after it: {len(bundle.train)} "
                            f"training / {len(bundle.val)} validation{test} rows, as `data/data.pt`.",
                            "Training rows per class: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                            + f". Train reads it with `--data-uri {data_uri}`.")
        return PrepareResult(active.info.run_id, data_uri, bundle)
