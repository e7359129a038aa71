"""Stage `prepare-data`: build a data set once and log it for the other stages.

Run as ``pipeline prepare-data [--n 75 --width 20 --data-seed 0]`` or
``mlflow run . -e prepare_data``. Writes the tensors (``data/data.pt``, read by
``train --data-uri runs:/<id>/data``), a dataset input, class counts and a picture of X
beside y.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline import tracking
from pipeline.config import PrepareDataConfig, as_params, resolve
from pipeline.data.bundle import DataBundle, load_bundle
from pipeline.data.io import log_bundle_artifact, log_bundle_input


@dataclass(frozen=True)
class PrepareResult:
    run_id: str
    data_uri: str  # runs:/<id>/data, for train --data-uri
    bundle: DataBundle


def class_counts(bundle: DataBundle) -> dict[str, int]:
    y = bundle.train.y.numpy().ravel().astype(int)
    counts = np.bincount(y, minlength=len(bundle.classes))
    return {name: int(c) for name, c in zip(bundle.classes, counts)}


def log_data_picture(bundle: DataBundle) -> None:
    from pipeline import plots

    if bundle.train.X.ndim == 3:  # 1D sequences: heatmap of X beside y
        fig = plots.heatmaps(
            [("X", bundle.train.X[:, 0].numpy()), ("y", bundle.train.y.numpy())],
            suptitle=f"{bundle.name}: training set ({len(bundle.train)} rows)",
            symmetric=[True, False],
        )
        tracking.log_figure(fig, "figures/data.png")


def run(cfg: PrepareDataConfig, echo: Callable[[str], None] = print) -> PrepareResult:
    import mlflow

    cfg = resolve(cfg)
    tracking.configure(cfg.tracking_uri, cfg.experiment_name)
    bundle = load_bundle(cfg)
    with tracking.stage_run("prepare-data", run_name=f"prepare-{bundle.name}",
                            tags={"recipe": cfg.recipe, "dataset": bundle.name}) as active:
        tracking.log_params_safely(as_params(cfg))
        mlflow.log_dict(dataclasses.asdict(cfg), "config.json")
        data_uri = log_bundle_artifact(bundle)
        log_bundle_input(bundle, context="training")
        counts = class_counts(bundle)
        mlflow.log_dict(counts, "class_counts.json")
        mlflow.log_metrics({"n_train": len(bundle.train), "n_val": len(bundle.val),
                            **{f"count_class_{i}": c for i, c in enumerate(counts.values())}})
        log_data_picture(bundle)
        echo(f"prepared {bundle.name}: {len(bundle.train)} train / {len(bundle.val)} val rows, "
             f"class counts {counts} -> {data_uri}")
        return PrepareResult(active.info.run_id, data_uri, bundle)
