"""Artifacts of a run: figures, text, tables (CSV) and the trained model.

Text artifacts pass through ``redact``: a password never reaches an artifact file.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Iterator, Sequence

from pipeline.tracking.redact import redact


def log_figure(fig: Any, artifact_file: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(redact(text), artifact_file)


def log_table(df: Any, artifact_file: str) -> None:
    """A pandas table as a CSV artifact."""
    import mlflow

    buf = io.StringIO()
    df.to_csv(buf, index=False)
    mlflow.log_text(redact(buf.getvalue()), artifact_file)


def pip_requirements() -> list[str]:
    """Pinned requirements for logged models (skips MLflow's slow requirement inference)."""
    from importlib.metadata import version

    reqs = []
    for pkg in ("torch", "mlflow", "numpy", "cloudpickle"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except Exception:  # noqa: BLE001 - a missing distribution just goes unpinned
            reqs.append(pkg)
    return reqs


def model_name(model: str, filters: Sequence[int], kernel_size: Sequence[int]) -> str:
    """What a logged model is, as the UI lists it: ``detector1d-F4-k5``, ``lenet-F6-16-k5-5``."""
    return f"{model}-F{'-'.join(map(str, filters))}-k{'-'.join(map(str, kernel_size))}"


def log_model(model: Any, input_example: Any, name: str = "model", classes: Sequence[str] = (),
              registered_model_name: str | None = None) -> str:
    """Log a torch model as ``name`` with a signature and an input example; returns its runs:/ URI.

    Saved as a pickled ``nn.Module``, not MLflow 3's default ``pt2`` (torch.export) program:
    evaluate needs the module itself (``.eval()`` for dropout and batch norm, its layers
    for filters and feature maps), which an exported program does not give back (its
    ``eval()`` raises, its class is a GraphModule), and exporting costs seconds. MLflow's
    warning about pickles is therefore not printed on every run; the README explains it once.
    Served (pyfunc), it answers with the probability of each of ``classes`` and the predicted
    class (``serving.py``). ``registered_model_name`` also registers it as a new version. The
    requirements are written, not inferred (inference loads the model in a subprocess), and
    checked against this environment without scanning it (``compat.without_distribution_scan``).
    """
    import inspect

    import mlflow
    import numpy as np
    from mlflow.models import Model

    from pipeline.tracking import serving
    from pipeline.tracking.compat import without_distribution_scan

    model_cpu = model.to("cpu").eval()
    extra = {}
    if "serialization_format" in inspect.signature(mlflow.pytorch.log_model).parameters:  # MLflow >= 3
        extra["serialization_format"] = "pickle"
    input_shape = tuple(np.asarray(input_example).shape[1:])
    with _without_pickle_warning(), without_distribution_scan():
        Model.log(
            artifact_path=None,
            name=name,
            flavor=serving,  # mlflow.pytorch's format; the pyfunc flavour answers with probabilities
            pytorch_model=model_cpu,
            input_example=input_example,
            signature=serving.signature(input_shape, classes),
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            classes=classes,
            input_shape=input_shape,
            **extra,
        )
    return f"runs:/{mlflow.active_run().info.run_id}/{name}"


class _PickleWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle or CloudPickle" not in record.getMessage()


@contextlib.contextmanager
def _without_pickle_warning() -> Iterator[None]:
    """Drop mlflow.pytorch's warning that a pickled model runs code when loaded (README: "The model's format")."""
    logger, quiet = logging.getLogger("mlflow.pytorch"), _PickleWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
