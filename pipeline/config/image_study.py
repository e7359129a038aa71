"""The options of a capacity study on images: those of `pipeline train` that every training of
the grid shares, and how a grid value F sets the filters of a net with several conv layers.

``CapacityConfig`` mixes these in; a study is on images when its recipe or ``--dataset``
names image data (``digits``, ``mnist``, ...). Each training of the grid is then the
``TrainConfig`` that ``train_config`` returns, so that it is validated, resolved against
the recipe and trained exactly as ``pipeline train`` would.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline.config.fields import IF_CHANGED, IMAGES, SETTING, DataFields, opt, refuse_options
from pipeline.config.stages import TrainConfig
from pipeline.errors import ConfigError

FILTER_RULES = ("all", "scale", "first")
STRATEGIES = ("auto", "grouped", "vmap", "loop")  # how a cell's seeds run (capacity/images/strategy.py)


@dataclass(frozen=True)
class ImageStudyFields:
    data_uri: str | None = opt(None, "images: prepared data from prepare-data (runs:/<id>/data); default: build it",
                               SETTING)
    model: str | None = opt(None, "images: smallconv | lenet | conv3 | dropoutnet (default: the recipe's)", IMAGES)
    padding: str | None = opt(None, "images: same (k//2, keeps H x W) or valid (no padding)", IMAGES)
    dropout: float | None = opt(None, "images: dropout probability (each seed draws its own masks); 0 = none", IMAGES)
    batch_norm: bool = opt(False, "images: BatchNorm2d after every conv (each seed keeps its own running statistics)",
                           IMAGES)
    in_channels: int | None = opt(None, "images: input channels the model is built for (cifar-lenet: 3)", SETTING)
    loss: str | None = opt(None, "images: ce (cross-entropy) | nll (log-softmax + NLL)", IMAGES)
    optimizer: str | None = opt(None, "images: sgd | rmsprop | adam", IMAGES)
    batch_size: int | None = opt(None, "images: minibatch size", IMAGES)
    test_batch_size: int = opt(1000, "images: rows scored at once for one model (divided among the seeds)", SETTING)
    max_batches: int = opt(0, "images: stop each epoch after this many minibatches (0 = all): a fast path for tests",
                           IF_CHANGED)
    filter_rule: str = opt("all", "images: how a grid value F sets the conv layers' filters: all (F in every "
                                  "layer), scale (F in the first, the others scaled with it from the recipe's), "
                                  "first (F in the first, the others as the recipe)", IMAGES)
    strategy: str = opt("auto", "images: how a cell's seeds run: grouped (grouped convolutions), vmap (torch.func; "
                                "nets without dropout), loop (one seed per computation; on a CPU with several "
                                "threads, seeds side by side in threads of their own) or auto (a fixed rule on the CPU; on a GPU the "
                                "fastest per seed, timed on the first minibatch)", SETTING)
    margin: float = opt(0.05, "images: a seed is a bad run when its test accuracy is more than this below the "
                              "best seed of its cell", IMAGES)
    resume: str | None = opt(None, "images: continue the KILLED or FAILED capacity run with this parent run id (or "
                                   "a rescue folder) from its checkpoint: finished cells are kept, the one that was "
                                   "stopped is trained again", SETTING)

    def _check_image_study(self) -> None:
        """Fail now, in one line, on what any training of the grid would fail on later."""
        if self.filter_rule not in FILTER_RULES:
            raise ConfigError(f"--filter-rule must be one of {', '.join(FILTER_RULES)}, got {self.filter_rule!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not 0 <= self.margin < 1:
            raise ConfigError(f"--margin must be in [0, 1), got {self.margin}")
        refuse_options(self._synthetic_given(),  # the study's own words, before train's
                       "options of the synthetic 1D study, but this capacity study is on images (its seeds are "
                       "scored by test accuracy; --margin sets the bad runs)")
        train_config(self)  # TrainConfig checks padding, dropout, loss, optimizer, batch size, ...

    def _check_synthetic_study(self) -> None:
        """The 1D study trains the detector on its own data: image options there are a mistake."""
        given = [f.name for f in dataclasses.fields(ImageStudyFields) if getattr(self, f.name) != f.default]
        refuse_options(given + self._image_data_given(), "image options, but this capacity study is on the synthetic "
                                                         "data (give --dataset digits|mnist|... or an image --recipe)")


def train_config(study: ImageStudyFields, filters: tuple[int, ...] | None = None,
                 kernel_size: tuple[int, ...] | None = None, seed: int | None = None) -> TrainConfig:
    """The `pipeline train` config of one training of the study (not resolved: None = the recipe's)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"filters", "kernel_size", "seed", "resume"}
    shared = {name: getattr(study, name) for name in names if hasattr(study, name)}
    return TrainConfig(**shared, filters=filters, kernel_size=kernel_size, seed=seed, print_every=0,
                       log_interval=0, image_every=0)


def is_image_study(study: DataFields) -> bool:
    """Whether the recipe or --dataset names image data (else: the synthetic detector's study); a ``--resume``
    continues an image study (whose settings are in its checkpoint)."""
    return study.recipe_value("dataset") != "synthetic" or bool(getattr(study, "resume", None))
