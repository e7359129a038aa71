"""Where the training loop is, as a checkpoint holds it: the epoch and the minibatch within it,
the epoch's running sums, the generator of the minibatch order, every random state (dropout
masks come from torch's global one), the model and the optimizer. ``restore`` puts a loop
back exactly there, so that a resumed run continues bit for bit.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from pipeline.config.stages import parse_every
from pipeline.tracking.checkpoints import random_states, set_random_states


@dataclass
class Position:
    """The loop's place: ``epoch`` epochs done, then ``batch`` minibatches of the next in ``order``."""

    gen: torch.Generator  # draws each epoch's minibatch order
    epoch: int = 0
    batch: int = 0
    order: torch.Tensor | None = None  # this epoch's order, once drawn (None: not drawn yet, or full batch)
    sums: dict[str, Any] = field(default_factory=dict)  # loss_sum, correct, seen, last_loss of this epoch

    def next_epoch(self) -> None:
        self.epoch, self.batch, self.order, self.sums = self.epoch + 1, 0, None, {}


def capture(pos: Position, model: torch.nn.Module, optimizer: Any, history: Any) -> dict[str, Any]:
    """The loop's state at ``pos`` (between minibatches), copied: training may go on after it is taken."""
    return {"epoch": pos.epoch, "batch": pos.batch, "order": pos.order, "gen": pos.gen.get_state(),
            "sums": _cpu(pos.sums), "history": dataclasses.asdict(history),
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer": _cpu(optimizer.state_dict()), "random": random_states()}


def restore(state: dict[str, Any], pos: Position, model: torch.nn.Module, optimizer: Any,
            device: torch.device) -> dict[str, list[float]]:
    """Put the loop, the model, the optimizer and every random state back where ``capture`` took them;
    returns the history's fields."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    pos.gen.set_state(state["gen"])
    pos.epoch, pos.batch, pos.order = state["epoch"], state["batch"], state["order"]
    pos.sums = {k: v.to(device) if torch.is_tensor(v) else v for k, v in state["sums"].items()}
    set_random_states(state["random"])
    return state["history"]


def _cpu(tree: Any) -> Any:
    if torch.is_tensor(tree):
        return tree.detach().cpu().clone()
    if isinstance(tree, dict):
        return {k: _cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cpu(v) for v in tree)
    return tree


class Schedule:
    """When ``--checkpoint-every`` asks for one: every N epochs, or at the first epoch end past the duration."""

    def __init__(self, every: str):
        self.epochs, self.seconds = parse_every(every)
        self.last = time.monotonic()

    def due(self, epoch: int) -> bool:
        if self.epochs:
            return epoch % self.epochs == 0
        return time.monotonic() - self.last >= self.seconds

    def done(self) -> None:
        self.last = time.monotonic()


@dataclass
class Checkpoints:
    """What ``fit`` needs to checkpoint: where to send a state, how often, and the state to start from."""

    save: Callable[[dict[str, Any], bool], None]  # (loop state, whether a signal stopped the loop)
    every: str = "10m"  # --checkpoint-every
    start: dict[str, Any] | None = None  # a checkpoint to continue from
    resume: str = ""  # the command that continues the run: the signal's line names it
