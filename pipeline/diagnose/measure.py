"""Everything diagnose measures about one configuration (F, k), seed by seed, before any verdict.

The per-seed table has, besides (filters, kernel_size, seed): the capacity run's outcome
(``final_loss`` of the last epoch, ``train_accuracy``, ``success``); at the final weights,
the training loss (``loss``), the objective J = loss + wd/2·|theta|² (``objective``), the
norms of dJ (``grad_norm``) and of dloss (``bce_grad_norm``), J's Hessian's extreme
eigenvalues (``hessian_min``, ``hessian_max``), how close a ReLU is to switching
(``relu_margin``) and a max to changing hands (``argmax_gap``); over the last L epochs, the
averaged dJ (``mean_grad_norm``), the net move and the path length, the last epoch with a
switch; the best drop of J found by the line searches within the radius
(``drop_gradient``, ``drop_curvature``); the long run's loss and whether it ``escaped``;
the seed's filters by class and its best initial alignment with the pattern.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline.capacity.kernel import WindowIndex
from pipeline.capacity.outcomes import datasets
from pipeline.capacity.stats import is_success
from pipeline.diagnose import anatomy
from pipeline.diagnose.derivatives import DetectorObjective, gradients, hessians, kink_margins, values
from pipeline.diagnose.replay import Trajectory, long_run, replay
from pipeline.diagnose.source import CapacitySource
from pipeline.errors import CheckFailed
from pipeline.diagnose.verdicts import best_drop, probes


@dataclass
class Measured:
    table: pd.DataFrame  # one row per seed
    filters: pd.DataFrame  # one row per (seed, filter): class, preferred bump, linear weight
    grad_drops: np.ndarray  # (S, len(verdicts.STEPS)) drop of J along -grad J at each step length
    curv_drops: np.ndarray  # (S, len(STEPS)) the same along the lowest-curvature eigenvector, either sign
    trajectory: Trajectory
    objective: DetectorObjective  # J, float64
    loss: DetectorObjective  # the training loss alone (wd = 0), float64


def measure(filters: int, k: int, source: CapacitySource, last_epochs: int, radius: float,
            long_factor: int) -> Measured:
    s = source.settings
    traj = replay(filters, k, source.seeds, s, last_epochs)
    X, y = (torch.from_numpy(a) for a in datasets(s.n, s.width, s.data_seed, s.test_n, s.test_seed)[:2])
    index = WindowIndex.build(X, y, k).to("cpu", torch.float64)
    J = DetectorObjective(index, filters, k, s.weight_decay)
    loss = DetectorObjective(index, filters, k, 0.0)
    theta = traj.theta
    grad = gradients(J, theta)
    eigenvalues, eigenvectors = torch.linalg.eigh(hessians(J, theta))
    relu, gap = kink_margins(J, theta)
    success = is_success(traj.final_loss, traj.train_accuracy, s.tau)
    grad_drops = probes(J, theta, -grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-300))
    # the lowest eigenvector, turned to the side where J does not fall to first order (g·v >= 0): a drop
    # along it is then the curvature's doing
    lowest = eigenvectors[:, :, 0]
    lowest = lowest * torch.where((grad * lowest).sum(1, keepdim=True) < 0, -1.0, 1.0)
    curv_drops = probes(J, theta, lowest)
    failed = np.flatnonzero(~success)
    long_loss, long_acc = np.full(len(theta), np.nan), np.full(len(theta), np.nan)
    long_loss[failed], long_acc[failed] = long_run(traj, failed, s, long_factor)
    filter_table = anatomy.classify_filters(theta, X, filters, k)
    table = pd.DataFrame({
        "filters": filters, "kernel_size": k, "seed": np.asarray(traj.seeds),
        "final_loss": traj.final_loss, "train_accuracy": traj.train_accuracy, "success": success,
        "loss": values(loss, theta).numpy(), "objective": values(J, theta).numpy(),
        "grad_norm": grad.norm(dim=1).numpy(),
        "bce_grad_norm": (grad - s.weight_decay * theta).norm(dim=1).numpy(),
        "mean_grad_norm": traj.mean_grad.norm(dim=1).numpy(),
        "hessian_min": eigenvalues[:, 0].numpy(), "hessian_max": eigenvalues[:, -1].numpy(),
        "relu_margin": relu.numpy(), "argmax_gap": gap.numpy(),
        "moved": traj.moved, "path_length": traj.path_length, "last_switch_epoch": last_switch(traj.switched),
        "drop_gradient": best_drop(grad_drops, radius), "drop_curvature": best_drop(curv_drops, radius),
        "long_loss": long_loss, "long_accuracy": long_acc,
        "escaped": is_success(long_loss, long_acc, s.tau),
        "initial_alignment": anatomy.initial_alignment(traj.theta_init, filters, k),
    })
    table = pd.concat([table, anatomy.class_counts(filter_table, len(theta))], axis=1)
    filter_table = filter_table.assign(filters=filters, kernel_size=k,
                                       seed=np.asarray(traj.seeds)[filter_table["row"]],
                                       success=success[filter_table["row"]]).drop(columns="row")
    return Measured(table, filter_table, grad_drops, curv_drops, traj, J, loss)


def last_switch(switched: np.ndarray) -> np.ndarray:
    """(S,) the last epoch whose step changed the activation pattern (0: none), from (epochs, S) flags."""
    T = switched.shape[0]
    return np.where(switched.any(axis=0), T - np.argmax(switched[::-1], axis=0), 0)


# float rounding is all that may part a replay from its capacity run. A run trained on the CPU's compiled
# engine replays to the bit (a seed's numbers do not depend on what is batched beside it); one trained on the
# torch engine (on a GPU, or by code before the compiled engine, whose final losses measured up to 5.7e-4
# from it over the default grid) differs by float32 rounding, which can pick the other side of a switch
# (which window holds the max, whether a ReLU is on) for about one seed in a hundred and part the final
# losses by up to ~2e-3 (``capacity.multiseed``'s docstring); a different training (another code version,
# other settings) differs by far more.
REPLAY_TOLERANCE = 1e-2


class ReplayMismatch(CheckFailed):
    """The replayed trainings do not end where the capacity run's ended: the diagnosis would be of other
    trainings than the run's. Exit 1 with its one line, the diagnose run ended FAILED with it as its error."""


@dataclass(frozen=True)
class ReplayCheck:
    max_abs_diff: float  # largest |replayed - logged| final loss; nan when the check could not be made
    line: str  # the console line: how close, or why not checked


def replay_check(table: pd.DataFrame, source: CapacitySource) -> ReplayCheck:
    """Compare the replayed final losses with the ones the capacity run logged, over the seeds both have.

    Raises ``ReplayMismatch`` (one line: the seed that differs most and by how much) beyond
    ``REPLAY_TOLERANCE``; where the run's table cannot be read or shares no seed, says why.
    """
    keys = ["filters", "kernel_size", "seed"]
    logged = source.table
    if logged is None:
        return ReplayCheck(float("nan"), f"replay not checked against capacity run {source.run_id}: "
                                         f"{source.unreadable}")
    if not {*keys, "final_loss"} <= set(logged.columns):
        return ReplayCheck(float("nan"), f"replay not checked against capacity run {source.run_id}: its "
                                         "tables/seeds.csv has no final_loss per (filters, kernel_size, seed)")
    both = table.merge(logged[[*keys, "final_loss"]], on=keys, suffixes=("", "_logged"))
    if both.empty:
        return ReplayCheck(float("nan"), f"replay not checked against capacity run {source.run_id}: its "
                                         "tables/seeds.csv has none of the replayed seeds")
    gap = (both["final_loss"] - both["final_loss_logged"]).abs().fillna(np.inf)  # a NaN on one side only differs
    gap[both["final_loss"].isna() & both["final_loss_logged"].isna()] = 0.0
    worst = both.loc[gap.idxmax()]
    if gap.max() > REPLAY_TOLERANCE:
        raise ReplayMismatch(
            f"the replay does not match capacity run {source.run_id}: F={worst['filters']} k={worst['kernel_size']} "
            f"seed {worst['seed']} ends at loss {worst['final_loss']:.6g}, the run logged "
            f"{worst['final_loss_logged']:.6g} (|difference| {gap.max():.2g} > {REPLAY_TOLERANCE:g}); diagnose the "
            "run with the code version that made it (its git_commit tag)")
    return ReplayCheck(float(gap.max()), "replayed final losses differ from the capacity run's by at most "
                                         f"{gap.max():.2g}")
