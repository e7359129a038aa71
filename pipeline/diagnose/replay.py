"""Replay a capacity run's trainings, watching the closing epochs, and continue the failed ones.

``replay`` trains one configuration from all the run's seeds with the capacity stage's own
batched trainer (``multiseed.sgd_epochs``, batched as ``outcomes.seed_table`` batches), so
each seed ends at the weights that ``pipeline train --seed s`` ends at, within float
rounding, and its last-epoch loss is the one the capacity run logged. Along the way it
records what the final iterate alone cannot show: the objective's gradient averaged over
the last L epochs, how far the weights moved in them, and the last epoch in which the
activation pattern changed (which window holds the max, which ReLU is on: a switch of the
piecewise-smooth loss). ``long_run`` continues chosen seeds from their final weights and
momentum for ``factor`` times the epochs at lr / ``factor``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.capacity.kernel import WindowIndex, accuracy, forward, mean_bce
from pipeline.capacity.multiseed import sgd_epochs, stack_initial
from pipeline.capacity.outcomes import Settings, datasets
from pipeline.diagnose.derivatives import detector_theta


@dataclass
class Trajectory:
    """One configuration (F, k) replayed from every seed; row i belongs to ``seeds[i]``."""

    filters: int
    kernel_size: int
    seeds: tuple[int, ...]
    epochs: int
    theta_init: torch.Tensor  # (S, P) float64 initial weights (derivatives.detector_theta layout)
    theta: torch.Tensor  # (S, P) float64 final weights (after the last step), as `pipeline train` ends
    final_loss: np.ndarray  # (S,) loss of the last epoch before its step, as the capacity run logs it
    train_accuracy: np.ndarray  # (S,)
    loss_history: np.ndarray  # (epochs, S) training loss of every epoch
    mean_grad: torch.Tensor  # (S, P) gradient of loss + wd/2·|theta|², averaged over the last L epochs
    moved: np.ndarray  # (S,) |theta_T - theta_{T-L}|
    path_length: np.ndarray  # (S,) sum of the step lengths over the last L epochs
    switched: np.ndarray  # (epochs, S) bool: step j (row j - 1) changed the activation pattern
    state: tuple  # (units, const, momentum buffers, batch, index): float32, to continue training


def _pattern(units, const, index, batch) -> torch.Tensor:
    """(G, U) int: each (row group, unit)'s first maximal window, or -1 where its ReLU is off."""
    _, zg, zmax, _, _ = forward(units, const, index, batch)
    first = (zg == zmax.unsqueeze(1)).to(torch.int8).argmax(dim=1)
    return torch.where(zmax > 0, first, -1)


def replay(filters: int, k: int, seeds: tuple[int, ...], settings: Settings, last_epochs: int) -> Trajectory:
    """Train (F, k) from every seed as the capacity stage does, recording the closing epochs."""
    X, y = (torch.from_numpy(a) for a in datasets(settings.n, settings.width, settings.data_seed, settings.test_n,
                                                    settings.test_seed)[:2])  # the stage's arrays, as tensors
    index = WindowIndex.build(X, y, k).to("cpu", torch.float32)
    units, const, batch = stack_initial([filters], k, seeds)
    theta_init = detector_theta(units.double(), const.double(), filters, k)
    T, S, wd = settings.epochs, len(seeds), settings.weight_decay
    L = min(last_epochs, T)
    history = np.empty((T, S))
    switched = np.zeros((T, S), dtype=bool)
    rec: dict = {"grad": 0.0, "path": torch.zeros(S), "prev": None, "pattern": _pattern(units, const, index, batch)}

    def on_epoch(epoch, logits, grad_units, grad_const):
        history[epoch - 1] = mean_bce(logits, index).numpy()
        if epoch > 1:  # the weights now are those after step epoch - 1
            pattern = _pattern(units, const, index, batch)
            changed = (pattern != rec["pattern"]).sum(dim=0).to(torch.float32)  # (U,)
            per_model = torch.zeros(S).index_add_(0, batch.model_of_unit, changed)
            switched[epoch - 2] = (per_model > 0).numpy()
            rec["pattern"] = pattern
        if epoch > T - L:
            theta = detector_theta(units, const, filters, k)
            g = detector_theta(grad_units + wd * units, grad_const + wd * const, filters, k)
            rec["grad"] = rec["grad"] + g.double()
            if rec["prev"] is None:
                rec["start"] = theta.clone()
            else:
                rec["path"] += (theta - rec["prev"]).norm(dim=1)
            rec["prev"] = theta.clone()
        if epoch == T:
            rec["final"] = (mean_bce(logits, index).numpy().astype(np.float64), accuracy(logits, index))

    bufs = sgd_epochs(units, const, index, batch, lr=settings.lr, momentum=settings.momentum, weight_decay=wd,
                      epochs=T, on_epoch=on_epoch)
    final = detector_theta(units, const, filters, k)
    pattern = _pattern(units, const, index, batch)  # the last step may switch too
    per_model = torch.zeros(S).index_add_(0, batch.model_of_unit, (pattern != rec["pattern"]).sum(0).float())
    switched[T - 1] = (per_model > 0).numpy()
    return Trajectory(
        filters=filters, kernel_size=k, seeds=tuple(seeds), epochs=T, theta_init=theta_init,
        theta=final.double(), final_loss=rec["final"][0], train_accuracy=rec["final"][1], loss_history=history,
        mean_grad=rec["grad"] / L, moved=(final - rec["start"]).norm(dim=1).double().numpy(),
        path_length=(rec["path"] + (final - rec["prev"]).norm(dim=1)).double().numpy(),
        switched=switched, state=(units, const, bufs, batch, index),
    )


def long_run(traj: Trajectory, rows: np.ndarray, settings: Settings, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Continue seeds ``rows`` (indices into traj.seeds) from their final weights and momentum for
    ``factor`` x the epochs at lr / ``factor``; their (loss, training accuracy) at the end."""
    if len(rows) == 0:
        return np.empty(0), np.empty(0)
    units, const, bufs, batch, index = traj.state
    F, rows_t = traj.filters, torch.as_tensor(rows, dtype=torch.long)
    cols = (rows_t[:, None] * F + torch.arange(F)).reshape(-1)  # the chosen models' units
    sub_units, sub_const = units[:, cols].clone(), const[rows_t].clone()
    sub_bufs = [bufs[0][:, cols], bufs[1][rows_t]] if bufs else None
    sub_batch = type(batch)(k=batch.k, model_of_unit=torch.arange(len(rows)).repeat_interleave(F), models=len(rows))
    sgd_epochs(sub_units, sub_const, index, sub_batch, lr=settings.lr / factor, momentum=settings.momentum,
               weight_decay=settings.weight_decay, epochs=factor * settings.epochs, bufs=sub_bufs)
    logits = forward(sub_units, sub_const, index, sub_batch)[0]
    return mean_bce(logits, index).numpy().astype(np.float64), accuracy(logits, index)
