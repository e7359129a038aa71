"""A second capacity task, from published work: is the pattern [1, 1, x, 1] in a noisy sequence?

rom1mouret/exploration (``cnn.py``, ``eval_cnn.py``, commit 3cb3a0d) trains
Conv1d(1, F, 4, bias=False) -> max over time -> Linear(F, 1) (no ReLU) online: each step
sees one fresh negative (64 uniform values in [-0.5, 0.5)) and one fresh positive (the
same, with 1 written at i, i+1 and i+3 for i uniform in 0..59; x = position i+2 stays
noise), BCE with logits, SGD lr 0.1, momentum 0.5, 100 steps; then it scores 1,000 such
pairs (2,000 sequences) drawn once. Its "RandomConv" variant freezes the convolution.

What this module reproduces of one published round, for a seed s: the published script
draws everything from the global torch and ``random`` streams, unseeded, one round after
another; here round s starts from ``torch.manual_seed(s)`` and ``random.Random(s)``, then
makes the same calls in the same order (the model's constructor: conv then linear; per
step ``torch.randn(2)`` for the hypernetwork's input, which the plain nets ignore but
which moves the stream, then the negative, then the positive and its ``randint``). So
a seed's data depend on F (the constructor draws 5F + 1 numbers first), as they do there.
The test pairs come from their own seed (``test_seed``), not from the training stream.

``train_pattern`` trains every seed at once with a hand-written forward and backward (the
gradient of the max goes to the maximal window, as torch's ``max(dim)`` routes it) and
the SGD step of the training loop (``train.sgd.sgd_update``, torch.optim.SGD's order); a test
checks it against the published loop written with nn.Conv1d and torch.optim.SGD, seed by seed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from pipeline.train.sgd import sgd_update

KERNEL = 4  # the published kernel size (no padding: a length-64 sequence has 61 windows)
LENGTH = 64  # sequence length
TASK = "pattern1101"  # the run tag of this task (the lab's own task is "detector")


# --------------------------------------------------------------------------- data
def _pair(rng: random.Random, length: int) -> torch.Tensor:
    """(2, length): a negative, then a positive; the published example_pair's calls, in its order."""
    negative = torch.rand(1, 1, length) - 0.5
    positive = torch.rand(1, 1, length) - 0.5
    i = rng.randint(0, length - 5)
    positive[0, 0, [i, i + 1, i + 3]] = 1
    return torch.cat([negative, positive])[:, 0]


def initial_and_stream(filters: int, seed: int, steps: int, length: int = LENGTH):
    """One published round from seed s: its initial weights and the pairs of its ``steps`` steps.

    Returns (conv (F, 4), linear weight (F,), linear bias (), pairs (steps, 2, length)); the
    global torch RNG is left as it was.
    """
    rng = random.Random(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        conv = torch.nn.Conv1d(1, filters, KERNEL, bias=False)  # the published constructor's order
        linear = torch.nn.Linear(filters, 1)
        pairs = []
        for _ in range(steps):
            torch.randn(2)  # the hypernetwork's input, drawn for every model there
            pairs.append(_pair(rng, length))
    return (conv.weight.detach()[:, 0].clone(), linear.weight.detach()[0].clone(),
            linear.bias.detach()[0].clone(), torch.stack(pairs))


def test_pairs(pairs: int, seed: int, length: int = LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test set: ``pairs`` (negative, positive) pairs from their own seed; X (2·pairs, length), y."""
    rng = random.Random(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        X = torch.cat([_pair(rng, length) for _ in range(pairs)])
    return X, torch.tensor([0.0, 1.0]).repeat(pairs)


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class PatternResult:
    """Per-seed outcome of one F; row i belongs to ``seeds[i]``."""

    filters: int
    frozen: bool  # the published "RandomConv": the convolution keeps its initial weights
    seeds: tuple[int, ...]
    conv: torch.Tensor  # (S, F, 4) final weights
    linear: torch.Tensor  # (S, F)
    bias: torch.Tensor  # (S,)
    last_loss: np.ndarray  # (S,) BCE of the last training pair, before its step
    test_loss: np.ndarray  # (S,) mean BCE on the test set
    test_accuracy: np.ndarray  # (S,) share of test sequences with (logit > 0) == y


def streams(filters: int, seeds: Sequence[int], steps: int, length: int = LENGTH):
    """Initial weights and data of every seed: (conv (S, F, 4), linear (S, F), bias (S,), pairs (S, T, 2, L))."""
    parts = [initial_and_stream(filters, s, steps, length) for s in seeds]
    return tuple(torch.stack(p) for p in zip(*parts))


def train_pattern(filters: int, seeds: Sequence[int], X_test: torch.Tensor, y_test: torch.Tensor, *,
                  lr: float = 0.1, momentum: float = 0.5, steps: int = 100, frozen: bool = False,
                  data=None, device: str | torch.device = "cpu") -> PatternResult:
    """Train every seed of the published task at once; ``data`` = ``streams(...)`` when the caller has it."""
    conv, lin, bias, pairs = data if data is not None else streams(filters, seeds, steps, X_test.shape[1])
    conv, lin, bias, pairs = (t.to(device).clone() for t in (conv, lin, bias, pairs))
    target = torch.tensor([0.0, 1.0], device=device)  # every step: (negative, positive)
    params = [lin, bias] if frozen else [conv, lin, bias]
    bufs: list[torch.Tensor | None] = [None] * len(params)
    with torch.no_grad():
        for t in range(steps):
            windows = pairs[:, t].unfold(2, KERNEL, 1)  # (S, 2, P, 4)
            logits, zmax, first = _forward(windows, conv, lin, bias)
            dl = (torch.sigmoid(logits) - target) / 2  # (S, 2): d(mean BCE of the pair)/d(logit)
            if t == steps - 1:
                last = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, target.expand_as(logits), reduction="none").mean(1)
            grads = [(dl.unsqueeze(2) * zmax).sum(1), dl.sum(1)]  # linear (S, F), bias (S,)
            if not frozen:
                at_max = windows.gather(2, first.unsqueeze(3).expand(-1, -1, -1, KERNEL))  # (S, 2, F, 4)
                grads.insert(0, ((dl.unsqueeze(2) * lin.unsqueeze(1)).unsqueeze(3) * at_max).sum(1))  # (S, F, 4)
            sgd_update(params, grads, bufs, lr=lr, momentum=momentum)  # torch.optim.SGD's step, no weight decay
        test_loss, test_acc = evaluate(conv, lin, bias, X_test.to(device), y_test.to(device))
    return PatternResult(filters, frozen, tuple(int(s) for s in seeds), conv.cpu(), lin.cpu(), bias.cpu(),
                         last.cpu().numpy(), test_loss, test_acc)


def _forward(windows: torch.Tensor, conv, lin, bias):
    """Logits (S, B), the max over time (S, B, F) and where it is (S, B, F), for windows (S, B, P, 4)."""
    z = torch.einsum("sbpk,sfk->sbpf", windows, conv)  # (S, B, P, F)
    zmax, first = z.max(dim=2)  # (S, B, F)
    return (zmax * lin.unsqueeze(1)).sum(2) + bias.unsqueeze(1), zmax, first


def evaluate(conv, lin, bias, X: torch.Tensor, y: torch.Tensor, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Mean BCE and accuracy of every seed's weights on (X (N, L), y (N,)), a few seeds at a time."""
    windows = X.unfold(1, KERNEL, 1)  # (N, P, 4), shared by every seed
    losses, accs = [], []
    for c, w, b in zip(conv.split(chunk), lin.split(chunk), bias.split(chunk)):
        logits = _forward(windows.expand(c.shape[0], *windows.shape), c, w, b)[0]  # (s, N)
        losses.append(torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y.expand_as(logits), reduction="none").mean(1))
        accs.append(((logits > 0).to(y.dtype) == y).to(torch.float64).mean(1))
    return torch.cat(losses).cpu().numpy().astype(np.float64), torch.cat(accs).cpu().numpy()
