"""`pipeline inspect`: what trained models learned, logged to MLflow."""
from __future__ import annotations

import pytest

from helpers import SHARED_MNIST, run_cli
from pipeline.config.stages import InspectConfig, TrainConfig
from pipeline.evaluate import inspect as inspection
from pipeline.train import stage as train


def _artifacts(client, run_id, path="inspect"):
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_detector_inspection(client):
    trained = train.run(TrainConfig(filters=(4,), seed=0, image_every=0), echo=lambda s: None)
    result = inspection.run(InspectConfig(run_id=trained.run_id), echo=lambda s: None)
    run = client.get_run(result.run_id)
    assert run.data.tags["stage"] == "inspect" and run.data.tags["source_run_id"] == trained.run_id
    assert {"inspect/detector_kernel.png", "inspect/detector_activations.png", "inspect/activation_max.png",
            "inspect/activation_maximisation.csv"} <= _artifacts(client, result.run_id)
    m = run.data.metrics
    # the detector fires on the positives (a lone +1) far more than on anything else
    assert m["detector_peak_positive"] > 3 * m["detector_peak_negative"]
    assert len(result.actmax) == 4 + 1 and (result.actmax["final"] > result.actmax["start"]).all()


def test_image_inspection_on_digits(client):
    trained = train.run(TrainConfig(dataset="digits", epochs=4), echo=lambda s: None)
    result = inspection.run(InspectConfig(run_id=trained.run_id, steps=60, saliency_examples=4),
                            echo=lambda s: None)
    arts = _artifacts(client, result.run_id)
    assert {"inspect/activation_max_filters.png", "inspect/activation_max_classes.png",
            "inspect/saliency_easiest.png", "inspect/saliency_hardest.png", "inspect/sobel_scores.csv"} <= arts
    assert len(result.sobel) == 6 and result.sobel["best_similarity"].between(-1, 1).all()
    assert result.actmax["final"].gt(result.actmax["start"]).all()


def test_inspect_bad_input_is_one_line(tracking_uri):
    code, _, err = run_cli("inspect", "--run-id", "0123456789abcdef", "--steps", "0")
    assert code == 2 and err.strip().startswith("Error: --steps") and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason=f"the real MNIST test split is not at {SHARED_MNIST} (a user's checkout has none)")
def test_trained_mnist_filters_are_more_sobel_like_than_untrained(client, capsys):
    trained = train.run(TrainConfig(recipe="mnist-small", data_dir=str(SHARED_MNIST), epochs=2,
                                    normalize="standard", image_every=0), echo=lambda s: None)
    result = inspection.run(InspectConfig(run_id=trained.run_id, steps=100), echo=lambda s: None)
    trained_mean = float(result.sobel["best_similarity"].mean())
    assert trained_mean > result.sobel_untrained_mean
    with capsys.disabled():
        print(f"\nSobel mean best similarity, mnist-small after 2 epochs on 8,000 real images: "
              f"trained {trained_mean:.3f}, untrained {result.sobel_untrained_mean:.3f}; "
              f"activation maximisation median gain (filters) "
              f"{result.actmax['gain'][:8].median():.1f}x")
