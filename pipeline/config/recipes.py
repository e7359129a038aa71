"""The recipe registry: named presets of data, model and training from the course labs.

A stage config's ``None`` fields take the chosen recipe's values (``resolve`` below); a
data set given alone picks its own recipe (``DATASET_RECIPES``).
"""
from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any, Mapping

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """A named preset of data, model and training settings from one of the course labs."""

    name: str
    description: str
    values: Mapping[str, Any]


RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, description: str, **values: Any) -> Recipe:
    recipe = Recipe(name, description, types.MappingProxyType(dict(values)))
    RECIPES[name] = recipe
    return recipe


register_recipe(
    "synthetic",
    "1D 'detect 0,+1,0' lab: Conv1d(1,F,k) -> ReLU -> global max pool -> Linear(F,1), "
    "full-batch SGD, BCEWithLogits, 500 epochs",
    dataset="synthetic",
    model="detector1d",
    filters=(3,),
    kernel_size=(5,),
    loss="bce",
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=1e-3,
    epochs=500,
    batch_size=0,  # full batch: the only recipe where 0 is allowed
    seed=0,
    print_every=50,
    image_every=50,
    device="cpu",  # the tiny 1D model is fastest on one CPU thread
    threads=1,
)

# What every image lab shares; each recipe below overrides what its lab changed.
_IMAGE_LAB = dict(
    loss="ce",
    optimizer="sgd",
    padding="valid",
    dropout=0.0,
    in_channels=1,
    momentum=0.0,
    weight_decay=0.0,
    seed=0,
    log_interval=100,  # print the running minibatch loss like the labs' script
    print_every=0,
    image_every=1,  # filters every epoch, so the UI shows them evolving
    device="auto",
    threads=0,  # torch's default: all cores
)

register_recipe(
    "mnist-small",
    "MNIST in [0,1]: Conv2d(1,8,5,padding=2) -> ReLU -> MaxPool2d(2) -> Linear(8*14*14,10); "
    "SGD lr 0.05, momentum 0.9, weight decay 1e-3, batch 100, 5 epochs",
    **{**_IMAGE_LAB, "dataset": "mnist", "model": "smallconv", "filters": (8,), "kernel_size": (5,),
       "padding": "same", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "batch_size": 100, "epochs": 5},
)
register_recipe(
    "fashion-lenet",
    "FashionMNIST, LeNet: Conv(1,6,5) -> pool -> Conv(6,16,5) -> pool -> 120 -> 84 -> 10; "
    "plain SGD lr 1e-3, batch 64, 10 epochs",
    **{**_IMAGE_LAB, "dataset": "fashion-mnist", "model": "lenet", "filters": (6, 16), "kernel_size": (5, 5),
       "lr": 1e-3, "batch_size": 64, "epochs": 10},
)
register_recipe(
    "mnist-lenet",
    "MNIST, the same LeNet; SGD lr 1e-3, momentum 0.9, batch 100, 3 epochs",
    **{**_IMAGE_LAB, "dataset": "mnist", "model": "lenet", "filters": (6, 16), "kernel_size": (5, 5),
       "lr": 1e-3, "momentum": 0.9, "batch_size": 100, "epochs": 3},
)
register_recipe(
    "mnist-rmsprop",
    "MNIST, Conv(1,32,3) -> pool -> Conv(32,64,3) -> pool -> Conv(64,64,3) -> 64 -> 10 (93,322 parameters); "
    "RMSprop with torch's defaults (lr 0.01), batch 64, 5 epochs",
    **{**_IMAGE_LAB, "dataset": "mnist", "model": "conv3", "filters": (32, 64, 64), "kernel_size": (3, 3, 3),
       "optimizer": "rmsprop", "lr": 0.01, "batch_size": 64, "epochs": 5},
)
register_recipe(
    "mnist-dropout",
    "MNIST, Conv(1,10,5) -> pool -> Conv(10,20,5) -> Dropout2d -> pool -> 50 -> Dropout -> 10, "
    "log-softmax + NLL; SGD lr 0.01, momentum 0.5, batch 64, 10 epochs, seed 1",
    **{**_IMAGE_LAB, "dataset": "mnist", "model": "dropoutnet", "filters": (10, 20), "kernel_size": (5, 5),
       "dropout": 0.5, "loss": "nll", "lr": 0.01, "momentum": 0.5, "batch_size": 64, "epochs": 10, "seed": 1},
)
register_recipe(
    "cifar-lenet",
    "CIFAR-10 (RGB), LeNet with 3 input channels (flatten 16*5*5); training as fashion-lenet",
    **{**_IMAGE_LAB, "dataset": "cifar10", "model": "lenet", "filters": (6, 16), "kernel_size": (5, 5),
       "in_channels": 3, "lr": 1e-3, "batch_size": 64, "epochs": 10},
)
register_recipe(
    "digits-lenet",
    "scikit-learn's 8x8 digits, LeNet adapted to 8x8: 'same' padding (k//2) so that two 2x2 pools "
    "leave 2x2 maps (flatten 16*2*2); SGD lr 0.05, momentum 0.9, batch 32, 30 epochs",
    **{**_IMAGE_LAB, "dataset": "digits", "model": "lenet", "filters": (6, 16), "kernel_size": (5, 5),
       "padding": "same", "lr": 0.05, "momentum": 0.9, "batch_size": 32, "epochs": 30},
)

# The recipe a data set gets when --recipe is not given.
DATASET_RECIPES = {
    "synthetic": "synthetic",
    "mnist": "mnist-small",
    "fashion-mnist": "fashion-lenet",
    "cifar10": "cifar-lenet",
    "digits": "digits-lenet",
    "npz": "mnist-small",
    "idx": "mnist-small",
}
DATASETS = set(DATASET_RECIPES)

# Built-in values of data options that no recipe sets (None in the dataclass = "not given",
# so that evaluate can tell them from the values of the run that it evaluates).
FALLBACKS: dict[str, Any] = {
    "data_dir": "data",
    "split_seed": 0,
    "val_fraction": 0.1,
    "test_fraction": 0.2,
    "normalize": "none",
}


def recipe_name(recipe: str | None, dataset: str | None) -> str:
    """The recipe in force: the one given, else the data set's own (synthetic by default)."""
    return recipe or DATASET_RECIPES.get(dataset or "synthetic", "synthetic")


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown recipe {name!r}; choose one of: {', '.join(sorted(RECIPES))}"
        ) from None


def resolve(cfg: Any) -> Any:
    """Fill every ``None`` field from the recipe, then from ``FALLBACKS``; explicit values win."""
    name = recipe_name(cfg.recipe, getattr(cfg, "dataset", None))
    recipe = get_recipe(name)
    updates: dict[str, Any] = {"recipe": name} if cfg.recipe != name else {}
    for f in dataclasses.fields(cfg):
        if getattr(cfg, f.name) is not None:
            continue
        if f.name in recipe.values:
            updates[f.name] = recipe.values[f.name]
        elif f.name in FALLBACKS:
            updates[f.name] = FALLBACKS[f.name]
    return dataclasses.replace(cfg, **updates) if updates else cfg
