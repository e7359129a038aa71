"""Artifacts of a run: figures, text, tables (CSV) and the trained model.

Text artifacts pass through ``redact``: a password never reaches an artifact file.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from pipeline.errors import ConfigError
from pipeline.tracking import identity
from pipeline.tracking.faults import is_store_fault
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
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("torch", "mlflow", "numpy", "cloudpickle"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:  # not installed (cloudpickle, in a trimmed environment): named, unpinned
            reqs.append(pkg)
    return reqs


def model_name(model: str, filters: Sequence[int], kernel_size: Sequence[int]) -> str:
    """What a logged model is, as the UI lists it: ``detector1d-F4-k5``, ``lenet-F6-16-k5-5``."""
    return f"{model}-F{'-'.join(map(str, filters))}-k{'-'.join(map(str, kernel_size))}"


NO_METRICS_STEP = -1  # a step at which no run logs metrics (see ``log_model``)


def log_model(model: Any, input_example: Any, name: str = "model", classes: Sequence[str] = (),
              registered_model_name: str | None = None, alias: str | None = None) -> str:
    """Log a torch model as ``name`` with a signature and an input example; returns its runs:/ URI.

    Saved as a pickled ``nn.Module``, not MLflow 3's default ``pt2`` (torch.export) program:
    evaluate needs the module itself (``.eval()`` for dropout and batch norm, its layers
    for filters and feature maps), which an exported program does not give back (its
    ``eval()`` raises, its class is a GraphModule), and exporting costs seconds. MLflow's
    warning about pickles is therefore not printed on every run; the README explains it once.
    Served (pyfunc), it answers with the probability of each of ``classes`` and the predicted
    class (``serving.py``). ``registered_model_name`` also registers it as a new version, which ``alias`` (when
    given) then names. MLflow 3 would make the run's metrics at the model's step its own (by logging them again,
    which PostgreSQL rejects as duplicates, and psycopg then warns): step 0 holds the system metrics' first sample,
    so the model is logged at step -1, where no metric is, and its metrics are the test metrics that ``evaluate``
    links to it (the Models tab's columns). The
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
        extra["step"] = NO_METRICS_STEP
    input_shape = tuple(np.asarray(input_example).shape[1:])
    with _without_pickle_warning(), without_distribution_scan():
        info = Model.log(
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
    if alias and registered_model_name:
        mlflow.MlflowClient().set_registered_model_alias(registered_model_name, alias, info.registered_model_version)
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


def log_dict(obj: Any, artifact_file: str) -> None:
    """A JSON (or YAML) artifact of the active run."""
    import mlflow

    mlflow.log_dict(obj, artifact_file)


def log_image(image: Any, artifact_file: str) -> None:
    """An image (array or PIL) as an artifact of the active run."""
    import mlflow

    mlflow.log_image(image, artifact_file=artifact_file)


def log_file(path: str | Path, artifact_dir: str | None = None) -> None:
    """A local file as an artifact of the active run, under ``artifact_dir``."""
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=artifact_dir)


def active_run_id() -> str:
    import mlflow

    return mlflow.active_run().info.run_id


def is_missing(err: BaseException) -> bool:
    """MLflow's "no such artifact / run / model" (the store answered, and it is not there)."""
    return getattr(err, "error_code", None) == "RESOURCE_DOES_NOT_EXIST" and not is_store_fault(err)


def download(uri: str, dst_path: str | None = None) -> str:
    """The local path of an artifact (``runs:/<id>/<path>`` or any artifact URI); MLflow's errors pass."""
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst_path)


def download_input(uri: str, option: str) -> str:
    """The local path of an artifact that the user named with ``option``: one that is not there (or an
    unknown scheme) is bad input, exit 2; a store that fails raises."""
    from mlflow.exceptions import MlflowException

    try:
        return download(uri)
    except (MlflowException, OSError, ImportError) as err:  # ImportError: a scheme whose client is missing (s3)
        if is_store_fault(err):  # the store failed, not the input: exit 1 with what happened
            raise
        raise ConfigError(f"{option} {uri}: cannot download ({str(err).strip().splitlines()[0]})") from None


def load_dict(uri: str) -> dict | None:
    """A JSON artifact as a dict, or None when it is not there; a failing store raises."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.artifacts.load_dict(uri)
    except MlflowException as err:
        if is_missing(err):
            return None
        raise


def copy_figures(run_id: str, names: dict[str, str], echo: Callable[[str], None] = print) -> list[str]:
    """Put figures of another run (``figures/<name>``) on the active run, under new names; returns those copied.

    A figure that the other run does not have is skipped with one line; any other failure (a
    store that stopped answering) raises.
    """
    import shutil
    import tempfile

    from mlflow.exceptions import MlflowException

    copied = []
    with tempfile.TemporaryDirectory() as tmp:
        for src, dst in names.items():
            try:
                path = download(f"runs:/{run_id}/figures/{src}", tmp)
            except MlflowException as err:
                if not is_missing(err):
                    raise
                echo(f"figure {src} of run {run_id} is not there (not drawn): not copied to {dst}")
                continue
            log_file(shutil.copy(path, Path(tmp) / dst), "figures")
            copied.append(dst)
    return copied


def log_dataset(X: Any, y: Any, name: str, context: str) -> None:
    """Numpy arrays (rows, ...) and their targets as an MLflow dataset input of the active run (the UI's Datasets),
    each row flattened to its features."""
    import mlflow

    dataset = mlflow.data.from_numpy(X.reshape(len(X), -1), targets=y, name=name)
    mlflow.log_input(dataset, context=context)
    mlflow.set_tag(identity.data_tag(context), dataset.digest)  # part of the run's identity
