"""How the S seeds of one cell run: which computations, in which memory format.

* ``grouped``: as many seeds as ``group_size`` allows in one stacked net (grouped
  convolutions, batched matmuls), activations channels-last or not;
* ``vmap``: the group's seeds through ``torch.func`` (``vmap`` of ``functional_call`` over the
  stacked weights), each seed running the template's own forward; not for nets with dropout
  (torch.func draws masks from torch's global generator, not from each seed's own stream);
* ``loop``: one seed per computation (a stacked net of one seed: plain convolutions), one
  seed after another, as a loop over `pipeline train --seed s` runs them; on a CPU with several
  threads and several seeds, with the threads split between seeds: the seeds run side by side,
  each in a thread of its own with one torch thread (``side_by_side.workers`` says how many at once).

Every candidate trains each seed on its own minibatches with its own optimizer and dropout
stream, so the choice changes only float rounding (see ``trainer``). In float32 that rounding
can carry a seed elsewhere over many epochs, so on the CPU ``auto`` follows a fixed rule and a
run, its resume and its reproduction end on the same bits: grouped, channels-last, wherever a
group holds more than one seed (``trainer.group_size``: at least two, so wherever a cell has two
seeds); the loop, contiguous, for a single seed. ``benchmarks/bench_image_multiseed.py`` justifies
the rule: on the 2-core test machine, with both threads (the image recipes' default, and `pipeline
train`'s), grouped channels-last was the fastest candidate for every image recipe's net (smallconv
on digits 5.4-7.0x the loop, 4.4-4.6x with 1 thread; LeNet 1.6-2.0x; the dropout net 1.9-2.1x), and
its ``--groups`` rows show two seeds at once beating the loop with the threads split between seeds
for every 28x28 net, mnist-rmsprop's included (146-160 against 222-243 ms per seed-epoch), whose two
seeds' activations pass ``GROUP_BYTES``; with a group of one seed it had run fastest contiguous, and
split. On a GPU,
where no run is bit for bit anyway, ``auto`` times one training step of each candidate on the
first minibatch (throwaway copies of the nets) and keeps the fastest per seed, cached per
(architecture, input shape, batch, seeds, device, threads).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from pipeline.config.image_study import STRATEGIES
from pipeline.errors import ConfigError

_CHOSEN: dict[tuple, "Plan"] = {}  # what ``auto`` measured, per key (see ``choose``)


@dataclass(frozen=True)
class Plan:
    """One way to run the seeds."""

    name: str  # grouped | vmap | loop
    seeds_at_once: int  # seeds per computation
    channels_last: bool  # activations stored channels-last
    split: bool = False  # the groups side by side in threads of one torch thread each (``side_by_side``)

    @property
    def label(self) -> str:
        """What the run records, e.g. ``grouped, channels-last``."""
        text = f"{self.name}, {'channels-last' if self.channels_last else 'contiguous'}"
        return f"{text}, threads split between seeds" if self.split else text


def candidates(strategy: str, group: int, dropout: str = "", split: bool = False) -> list[Plan]:
    """The plans ``strategy`` may pick from, for groups of at most ``group`` seeds.

    ``dropout``: what makes the net draw dropout masks ('' for none), which rules ``vmap`` out.
    ``split``: the loop may split the threads between seeds (a CPU with several threads, several
    seeds); the split loop then comes first, as the one the loop and the CPU's rule take.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "vmap" and dropout:
        raise ConfigError(f"--strategy vmap: {dropout}, and torch.func cannot give each seed its own dropout "
                          "masks; use --strategy auto, grouped or loop")
    grouped = [Plan("grouped", group, True), Plan("grouped", group, False)]
    vmapped = [Plan("vmap", group, False)] if not dropout else []
    loop = [Plan("loop", 1, False, True)] * split + [Plan("loop", 1, False), Plan("loop", 1, True)]
    if group == 1:  # a group of one seed is the loop
        grouped = vmapped = []
    return {"grouped": grouped or loop[:1], "vmap": vmapped or loop[:1], "loop": loop[:1],
            "auto": grouped + vmapped + loop}[strategy]


def choose(plans: list[Plan], key: tuple, step_time: Callable[[Plan], float], measure: bool = True) -> Plan:
    """The plan with the least time per seed, ``step_time(plan)`` being one step of its first group.

    One plan is taken without a measurement; a measured choice is cached under ``key``. Without
    ``measure`` (``auto`` on the CPU) the first candidate is taken: the rule in this module's docstring.
    """
    if len(plans) == 1 or not measure:
        return plans[0]
    full = (*key, tuple(plans), torch.get_num_threads())
    if full not in _CHOSEN:
        _CHOSEN[full] = min(plans, key=lambda p: step_time(p) / p.seeds_at_once)
    return _CHOSEN[full]


def chosen() -> dict[tuple, Plan]:
    """What ``auto`` has measured so far (a checkpoint keeps it: a resumed grid runs each cell as it was)."""
    return dict(_CHOSEN)


def remember(plans: dict[tuple, Plan]) -> None:
    """Take the choices of a checkpoint, so that ``auto`` does not measure (and perhaps pick) again."""
    _CHOSEN.update(plans)


def best_time(run: Callable[[], None], repeats: int = 2) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``run``, after one untimed call (allocations, caches)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best
