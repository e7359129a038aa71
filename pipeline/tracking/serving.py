"""Logged models that answer with class probabilities: how ``mlflow models serve`` and
``mlflow.pyfunc.load_model`` see the models that `train` logs.

A model is saved in ``mlflow.pytorch``'s format, so ``mlflow.pytorch.load_model`` still gives
back the ``nn.Module`` (evaluate and inspect need its layers). Only its ``python_function``
flavour loads through this module: it answers with one row per input, ``probability_<i>``
for every class (they sum to 1), ``predicted_class`` (the index) and ``predicted_label``. A
binary model (one logit) answers with both classes' probabilities.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.config.stages import ServeConfig
from pipeline.errors import ConfigError
from pipeline.tracking.connect import check_tracking_store
from pipeline.tracking.faults import is_store_fault
from pipeline.tracking.runs import resolve_uri


def save_model(path: str, mlflow_model: Any, classes: Sequence[str] = (), input_shape: Sequence[int] = (),
               **kwargs: Any) -> None:
    """``Model.log``'s flavour hook: mlflow.pytorch's format, with this module as the pyfunc loader."""
    import mlflow.pytorch
    from mlflow.models.model import MLMODEL_FILE_NAME
    from mlflow.pyfunc import FLAVOR_NAME, MODEL_CONFIG

    mlflow.pytorch.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
    pyfunc = mlflow_model.flavors[FLAVOR_NAME]
    pyfunc["loader_module"] = __name__
    pyfunc[MODEL_CONFIG] = {**(pyfunc.get(MODEL_CONFIG) or {}), "classes": list(classes),
                            "input_shape": list(input_shape)}
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))


def signature(input_shape: Sequence[int], classes: Sequence[str]) -> Any:
    """Input: a float32 batch (-1, *input_shape); output: the columns that ``ProbabilityModel`` answers with."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    outputs = [ColSpec("double", f"probability_{i}") for i in range(len(classes))]
    outputs += [ColSpec("long", "predicted_class"), ColSpec("string", "predicted_label")]
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape))]),
                          outputs=Schema(outputs))


def _load_pyfunc(path: str, model_config: dict | None = None) -> "ProbabilityModel":
    """Called by ``mlflow.pyfunc.load_model`` (and so by ``mlflow models serve``) with the model's ``data`` folder.

    The module is loaded with the public ``mlflow.pytorch.load_model`` from the model's folder, on
    the device that the model config names, else ``$MLFLOW_DEFAULT_PREDICTION_DEVICE``, else a GPU
    where there is one (as mlflow.pytorch's own pyfunc does).
    """
    import mlflow.pytorch
    import torch

    config = dict(model_config or {})
    device = (config.get("device") or os.environ.get("MLFLOW_DEFAULT_PREDICTION_DEVICE")
              or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = mlflow.pytorch.load_model(os.path.dirname(os.path.abspath(path)), device=device, weights_only=False)
    return ProbabilityModel(model, device, config.get("classes") or [], config.get("input_shape") or [])


class ProbabilityModel:
    """predict(batch) -> DataFrame: probability_<i> per class, predicted_class, predicted_label."""

    def __init__(self, model: Any, device: str, classes: Sequence[str], input_shape: Sequence[int]):
        self.model = model.eval()
        self.device = device
        self.classes = list(classes)
        self.input_shape = tuple(input_shape)

    def get_raw_model(self) -> Any:
        return self.model

    def predict(self, data: Any, params: dict | None = None) -> Any:
        import pandas as pd
        import torch

        x = data.to_numpy(dtype=np.float32) if isinstance(data, pd.DataFrame) else np.asarray(data, np.float32)
        if self.input_shape and x.shape[1:] != self.input_shape:
            x = x.reshape(-1, *self.input_shape)  # flat rows (a DataFrame) back into the model's input shape
        with torch.no_grad():
            out = self.model(torch.from_numpy(x).to(self.device)).float().cpu()  # (N, 1) logits or (N, K)
        probs = class_probabilities(out).numpy()
        table = pd.DataFrame(probs, columns=[f"probability_{i}" for i in range(probs.shape[1])])
        table["predicted_class"] = probs.argmax(axis=1).astype(np.int64)
        if self.classes:
            table["predicted_label"] = [self.classes[i] for i in table["predicted_class"]]
        if isinstance(data, pd.DataFrame):
            table.index = data.index
        return table


def class_probabilities(out: Any) -> Any:
    """(N, K) probabilities from a model's output: one logit -> [1 - p, p]; K logits or log-probs -> softmax."""
    import torch

    if out.shape[1] == 1:
        p = torch.sigmoid(out)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(out, dim=1)


def model_uri_of_run(run_id: str) -> str:
    """``runs:/<id>/<name>`` of the model that a run logged (train names it after what it is)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
        outputs = run.outputs.model_outputs if getattr(run, "outputs", None) else []
        names = [client.get_logged_model(o.model_id).name for o in outputs]
    except MlflowException as err:  # no such run (or not a run id); RestException for a server
        if is_store_fault(err):  # the store failed, not the input: exit 1 with what happened
            raise
        raise ConfigError(f"cannot load model of run {run_id}: {str(err).strip().splitlines()[0]}") from None
    return f"runs:/{run_id}/{names[0] if names else 'model'}"  # 'model': a run from before models had names


def model_id_of(uri: str) -> str | None:
    """The id of the MLflow 3 LoggedModel at ``uri`` (any model URI), read from its MLmodel file; None for a model
    saved without one (MLflow 2, a local path) or one whose MLmodel cannot be read (said in one line)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return getattr(mlflow.models.get_model_info(uri), "model_id", None)
    except (MlflowException, OSError) as err:
        if is_store_fault(err):
            raise
        print(f"Note: the metrics are not linked to model {uri} in the Models tab ({str(err).strip().splitlines()[0]})",
              file=sys.stderr)
        return None


def load_module(uri: str, device: Any) -> Any:
    """The ``nn.Module`` of a logged model, on ``device``, in eval mode; a bad URI is bad input (exit 2)."""
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pytorch.load_model(uri, map_location=device).eval()
    except (MlflowException, OSError, ImportError) as err:  # no such run, model or file; a scheme without its client
        if is_store_fault(err):  # the store failed, not the input: exit 1 with what happened
            raise
        raise ConfigError(f"cannot load model {uri}: {str(err).strip().splitlines()[0]}") from None


def check_servable(model_uri: str, host: str, port: int) -> None:
    """A model at ``model_uri`` and a free ``host:port`` to serve it on."""
    import socket

    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError, ImportError) as err:  # no such run, model or file; a scheme without its client
        if is_store_fault(err):
            raise
        raise ConfigError(f"--model-uri {model_uri}: no model there ({str(err).strip().splitlines()[0]})") from None
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ConfigError(f"--port {port} on {host}: {err.strerror}; give another --port or --host") from None


def serve(cfg: ServeConfig, echo: Callable[[str], None] = print) -> None:
    """Replace this process with ``mlflow models serve`` for the config's model, in this environment.

    ``--env-manager local``: no new virtualenv. The server's ``uvicorn`` is looked up on PATH, so
    this environment's ``bin`` goes first (``mlflow models serve`` alone fails outside an activated
    virtualenv).
    """
    import mlflow

    tracking_uri = resolve_uri(cfg.tracking_uri)
    check_tracking_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    model_uri = cfg.model_uri or model_uri_of_run(cfg.run_id)
    check_servable(model_uri, cfg.host, cfg.port)  # here, in one line: the server's own errors are tracebacks
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "--model-uri", model_uri, "--env-manager", "local",
           "--host", cfg.host, "--port", str(cfg.port)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    echo(f"serving {model_uri} at http://{cfg.host}:{cfg.port}/invocations")
    os.execvpe(cmd[0], cmd, env)
