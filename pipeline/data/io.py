"""Moving prepared data through MLflow: the tensors as an artifact, and dataset inputs."""
from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.data.bundle import ARTIFACT_DIR, ARTIFACT_FILE, DataBundle
from pipeline.errors import ConfigError
from pipeline.tracking.faults import is_store_fault


def log_bundle_artifact(bundle: DataBundle) -> str:
    """Save the bundle under the active run's ``data/`` and return its ``runs:/`` URI."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(bundle.save(Path(tmp) / ARTIFACT_FILE)), artifact_path=ARTIFACT_DIR)
    return f"runs:/{mlflow.active_run().info.run_id}/{ARTIFACT_DIR}"


def bundle_from_uri(uri: str) -> DataBundle:
    """Load prepared data from ``runs:/<id>/data`` (or any artifact URI / local path)."""
    import mlflow

    local = Path(uri)
    if not local.exists():
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        except Exception as err:  # noqa: BLE001 - MLflow raises many kinds; all mean "not there"
            if is_store_fault(err):  # the store failed, not the input: exit 1 with what happened
                raise
            raise ConfigError(f"--data-uri {uri}: cannot download ({str(err).splitlines()[0]})") from None
    if local.is_dir():
        local = local / ARTIFACT_FILE
    if not local.exists():
        raise ConfigError(f"--data-uri {uri}: no {ARTIFACT_FILE} there (expected prepare-data's data/ artifact)")
    return DataBundle.load(local)


def log_bundle_input(bundle: DataBundle, context: str = "training") -> None:
    """Record the data set as an MLflow dataset input (shown in the UI's Datasets column)."""
    import mlflow

    X = bundle.train.X.reshape(len(bundle.train), -1).numpy()
    y = bundle.train.y.numpy()
    dataset = mlflow.data.from_numpy(X, targets=y, name=bundle.name)
    mlflow.log_input(dataset, context=context)
