"""How a cell's seeds run: the choice among the plans, and dropout that does not depend on it."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.capacity.images.side_by_side import workers
from pipeline.capacity.images.strategy import Plan, candidates, choose
from pipeline.capacity.images.trainer import train_seeds
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.data.load import load_bundle
from pipeline.errors import ConfigError

QUIET = dict(print_every=0, log_interval=0, image_every=0, device="cpu")
DROPOUT = resolve(TrainConfig(dataset="digits", model="dropoutnet", filters=(4, 8), kernel_size=(3,), padding="same",
                              dropout=0.5, loss="nll", epochs=1, max_batches=6, **QUIET))


def test_auto_keeps_the_least_time_per_seed_and_measures_once():
    plans = candidates("auto", 4)
    assert {p.name for p in plans} == {"grouped", "vmap", "loop"} and {p.seeds_at_once for p in plans} == {1, 4}
    calls = []
    times = {Plan("grouped", 4, True): 0.8, Plan("grouped", 4, False): 0.5,  # per seed: 0.2, 0.125
             Plan("vmap", 4, False): 0.6, Plan("loop", 1, False): 0.15, Plan("loop", 1, True): 0.3}
    timed = lambda p: calls.append(p) or times[p]  # noqa: E731
    key = ("test", object())
    assert choose(plans, key, timed) == Plan("grouped", 4, False)
    assert choose(plans, key, timed) == Plan("grouped", 4, False) and len(calls) == 5  # cached
    assert candidates("grouped", 1) == [Plan("loop", 1, False)]  # one seed per group is the loop
    assert choose(candidates("loop", 8), key, timed).label == "loop, contiguous"
    with pytest.raises(ConfigError, match="--strategy"):
        candidates("fastest", 4)


def test_auto_on_the_cpu_is_a_fixed_rule_so_reruns_end_on_the_same_bits():
    def never(plan):
        raise AssertionError(f"auto on the CPU timed {plan}")

    assert choose(candidates("auto", 4), ("rule",), never, measure=False) == Plan("grouped", 4, True)
    assert choose(candidates("auto", 1), ("rule",), never, measure=False) == Plan("loop", 1, False)
    cfg = dataclasses.replace(DROPOUT, epochs=1, max_batches=3)
    bundle = load_bundle(cfg)
    first, again = (train_seeds(cfg, bundle, [0, 1, 2], strategy="auto") for _ in range(2))
    assert first.strategy == again.strategy == "grouped, channels-last"
    for i in range(3):
        for name, w in first.model(i).state_dict().items():
            assert torch.equal(w, again.model(i).state_dict()[name]), name


def test_where_threads_can_be_split_the_loop_splits_them():
    """A CPU with several threads and several seeds: the loop (and auto's rule for groups of one) splits the
    threads between seeds; groups of several seeds stay grouped."""
    split = Plan("loop", 1, False, True)
    assert candidates("loop", 4, split=True) == [split] and split.label.endswith("threads split between seeds")
    assert choose(candidates("auto", 1, split=True), ("rule",), print, measure=False) == split
    assert choose(candidates("auto", 4, split=True), ("rule",), print, measure=False) == Plan("grouped", 4, True)
    assert candidates("grouped", 1, split=True) == [split]  # one seed per group is the loop


def test_split_threads_are_as_few_as_give_the_least_wall_time():
    # (groups, cores) -> threads: 3 seeds on 2 cores in 3 threads take 1.5 rounds, in 2 threads 2 rounds
    assert [workers(g, 2) for g in (1, 2, 3, 4, 5, 200)] == [1, 2, 3, 2, 2, 2]
    assert workers(3, 1) == 1 and workers(6, 4) == 6 and workers(9, 4) == 5


def test_vmap_is_left_out_of_nets_with_dropout():
    """torch.func draws masks from torch's global generator: auto skips vmap there, and asking for it fails."""
    assert "vmap" not in {p.name for p in candidates("auto", 4, "dropoutnet has dropout (features.drop2)")}
    with pytest.raises(ConfigError, match=r"--strategy vmap: dropoutnet has dropout \(features.drop2, "):
        train_seeds(DROPOUT, load_bundle(DROPOUT), [0, 1], strategy="vmap")
    no_dropout = dataclasses.replace(DROPOUT, dropout=0.0)
    assert train_seeds(no_dropout, load_bundle(DROPOUT), [0, 1], strategy="vmap").strategy == "vmap, contiguous"


def test_dropout_seeds_end_alike_under_every_strategy():
    """Each seed draws its masks from its own stream, so the loop and the groups train it alike."""
    cfg = DROPOUT
    bundle = load_bundle(cfg)
    loop, grouped = (train_seeds(cfg, bundle, [2, 9], strategy=s) for s in ("loop", "grouped"))
    assert loop.strategy.startswith("loop") and grouped.strategy.startswith("grouped")
    for i in range(2):
        for k, v in loop.model(i).state_dict().items():
            torch.testing.assert_close(grouped.model(i).state_dict()[k], v, rtol=1e-4, atol=1e-5)
