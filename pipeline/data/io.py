"""Moving prepared data through MLflow: the tensors as an artifact, and dataset inputs."""
from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.data.bundle import ARTIFACT_DIR, ARTIFACT_FILE, DataBundle
from pipeline.errors import ConfigError
from pipeline.tracking import artifacts


def log_bundle_artifact(bundle: DataBundle) -> str:
    """Save the bundle under the active run's ``data/`` and return its ``runs:/`` URI."""
    with tempfile.TemporaryDirectory() as tmp:
        artifacts.log_file(bundle.save(Path(tmp) / ARTIFACT_FILE), ARTIFACT_DIR)
    return f"runs:/{artifacts.active_run_id()}/{ARTIFACT_DIR}"


def bundle_from_uri(uri: str) -> DataBundle:
    """Load prepared data from ``runs:/<id>/data`` (or any artifact URI / local path)."""
    local = Path(uri)
    if not local.exists():
        local = Path(artifacts.download_input(uri, "--data-uri"))
    if local.is_dir():
        local = local / ARTIFACT_FILE
    if not local.exists():
        raise ConfigError(f"--data-uri {uri}: no {ARTIFACT_FILE} there (expected prepare-data's data/ artifact)")
    return DataBundle.load(local)


def log_bundle_input(bundle: DataBundle, context: str = "training") -> None:
    """Record the data set as an MLflow dataset input (shown in the UI's Datasets column)."""
    artifacts.log_dataset(bundle.train.X.numpy(), bundle.train.y.numpy(), bundle.name, context)
