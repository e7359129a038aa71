"""The labs' recipes: their settings are the course labs' (transcribed below), and every one of them
runs on data in hand."""
from __future__ import annotations

import pytest

from pipeline.train import stage as train
from pipeline.config.recipes import RECIPES, resolve
from pipeline.config.stages import TrainConfig

from imagefiles import write_cifar_folder, write_mnist_folder

# The settings of the course labs that the recipes reproduce (data, model, training), as each lab's script
# has them; what the labs report: mnist-small's filters turn into edge detectors and its final-minibatch loss
# falls 0.24 -> 0.19 over 5 epochs; fashion-lenet's test accuracy climbs 18.5% (epoch 1) -> 67.8% (epoch 10);
# mnist-lenet's loss per 100 minibatches decays 2.30 -> about 0.22; mnist-rmsprop reaches about 0.97
# evaluation accuracy with 93,322 parameters; mnist-dropout about 98-99% test accuracy; cifar-lenet is
# fashion-lenet's net on RGB images (flatten 16*5*5).
DESIGN = {
    "mnist-small": dict(dataset="mnist", model="smallconv", filters=(8,), kernel_size=(5,), padding="same",
                        loss="ce", optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=100,
                        epochs=5),
    "fashion-lenet": dict(dataset="fashion-mnist", model="lenet", filters=(6, 16), kernel_size=(5, 5), loss="ce",
                          optimizer="sgd", lr=1e-3, momentum=0.0, batch_size=64, epochs=10),
    "mnist-lenet": dict(dataset="mnist", model="lenet", optimizer="sgd", lr=1e-3, momentum=0.9, batch_size=100,
                        epochs=3),
    "mnist-rmsprop": dict(dataset="mnist", model="conv3", filters=(32, 64, 64), kernel_size=(3, 3, 3),
                          optimizer="rmsprop", lr=0.01, momentum=0.0, weight_decay=0.0, batch_size=64, epochs=5),
    "mnist-dropout": dict(dataset="mnist", model="dropoutnet", filters=(10, 20), kernel_size=(5, 5), dropout=0.5,
                          loss="nll", optimizer="sgd", lr=0.01, momentum=0.5, batch_size=64, test_batch_size=1000,
                          epochs=10, seed=1, log_interval=100),
    "cifar-lenet": dict(dataset="cifar10", model="lenet", in_channels=3, lr=1e-3, batch_size=64, epochs=10),
}
PARAMS = {"mnist-small": 15_898, "fashion-lenet": 44_426, "mnist-lenet": 44_426, "mnist-rmsprop": 93_322,
          "mnist-dropout": 21_840, "cifar-lenet": 62_006}


@pytest.mark.parametrize("name", sorted(DESIGN))
def test_recipe_settings_are_the_labs(name):
    cfg = resolve(TrainConfig(recipe=name))
    for key, value in DESIGN[name].items():
        assert getattr(cfg, key) == value, key
    assert cfg.batch_size >= 1 and cfg.image_every == 1 and cfg.device == "auto"


def test_every_data_set_has_a_recipe_and_every_recipe_is_listed():
    assert set(DESIGN) | {"synthetic", "digits-lenet"} == set(RECIPES)
    assert resolve(TrainConfig(dataset="digits")).recipe == "digits-lenet"
    assert resolve(TrainConfig(dataset="fashion-mnist")).recipe == "fashion-lenet"
    assert resolve(TrainConfig()).recipe == "synthetic"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One torchvision root with MNIST, FashionMNIST and CIFAR-10 files, as --download would leave them."""
    root = tmp_path_factory.mktemp("torchvision")
    write_mnist_folder(root / "MNIST" / "raw", 300, 60)
    write_mnist_folder(root / "FashionMNIST" / "raw", 300, 60, gz=True)
    write_cifar_folder(root, n_per_batch=60)
    return root


@pytest.mark.parametrize("name", sorted(DESIGN))
def test_every_recipe_runs_one_option_away_from_the_data(name, data_root, tracking_uri, client):
    """`pipeline train --recipe NAME --data-dir ROOT`, cut short (1 epoch, 3 minibatches)."""
    result = train.run(TrainConfig(recipe=name, data_dir=str(data_root), epochs=1, max_batches=3, threads=1),
                       echo=lambda _: None)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["recipe"] == name and run.data.tags["dataset"] == DESIGN[name]["dataset"]
    assert int(run.data.metrics["num_parameters"]) == PARAMS[name]
    assert set(run.data.metrics) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "last_batch_loss"}
    images = [f.path for f in client.list_artifacts(result.run_id, "images")]
    assert any("filters+step+1+" in p for p in images)
