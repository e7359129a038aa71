"""The numbers that README.md and docs/*.md quote, each made by the project's own stages from fixed seeds.

Every function in BLOCKS returns the Markdown of one generated block (see doc_blocks.py); the runs go to a
scratch MLflow store under the temporary folder. SLOW names the blocks whose command takes minutes.
Timings are not generated: the pages quote them with the machine they were measured on.
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from pipeline.capacity import replication
from pipeline.capacity import stage as capacity
from pipeline.capacity.images import stats as image_stats
from pipeline.capacity.story import generalisation_text, headline, lottery_text
from pipeline.config.diagnosis import DiagnoseConfig
from pipeline.config.pattern import PatternCapacityConfig
from pipeline.config.recipes import resolve
from pipeline.config.stages import EvaluateConfig, MainConfig, TrainConfig
from pipeline.config.studies import CapacityConfig
from pipeline.data.load import load_bundle
from pipeline.data.synthetic import enumerate_synthetic, make_synthetic
from pipeline.diagnose import stage as diagnose
from pipeline.evaluate.exact import ExactScores, exact_scores
from pipeline.models.registry import build_model
from pipeline.tracking.serving import class_probabilities
from pipeline.train.loop import fit

TAU = CapacityConfig().tau
ROOT = Path(__file__).resolve().parent.parent


def plural(n: int, noun: str) -> str:
    """'none is a saddle', '1 is a saddle', '3 are saddles'."""
    return f"{n or 'none'} {'is a' if n < 2 else 'are'} {noun}{'s' * (n > 1)}"


def quiet(_: str) -> None:
    """An echo that prints nothing."""


@functools.cache
def store() -> str:
    """A scratch tracking URI for this process, removed at exit. Its experiment keeps its artifacts in the
    same folder: a new SQLite store would put them under ./mlruns of whatever folder this runs in."""
    from mlflow import MlflowClient

    from pipeline.tracking.experiments import experiment_name

    folder = tempfile.mkdtemp(prefix="docs-numbers-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    uri = f"sqlite:///{folder}/mlflow.db"
    if experiment_name(None):  # None: $MLFLOW_EXPERIMENT_ID names one in another store
        MlflowClient(uri).create_experiment(experiment_name(None), artifact_location=f"{folder}/mlruns")
    return uri


def detector(filters: int, seed: int = 0):
    """The synthetic recipe's config, data and untrained detector of `pipeline train --filters F --seed S`."""
    cfg = resolve(TrainConfig(filters=(filters,), seed=seed, print_every=0))
    model = build_model(cfg.model, (1, cfg.width), 1, cfg.filters, cfg.kernel_size, seed=cfg.seed)
    return cfg, load_bundle(cfg), model


def train(filters: int, seed: int = 0, on_epoch=None):
    """The detector trained as `pipeline train --filters F --seed S` (on the CPU): (model, history)."""
    cfg, bundle, model = detector(filters, seed)
    history = fit(model, bundle, cfg, torch.device("cpu"), on_epoch=on_epoch, echo=quiet)
    return model, history


trained = functools.cache(train)


@functools.cache
def grid(kernel_sizes: tuple[int, ...] = (3, 5, 7), seeds: int = 200, dataset: str | None = None, **more):
    """`pipeline capacity` with these options (the default grid: F = 1..8 x k = 3,5,7, 200 seeds)."""
    extra = {"dataset": dataset} if dataset else {}
    return capacity.run(CapacityConfig(kernel_sizes=kernel_sizes, seeds=seeds, tracking_uri=store(), **extra, **more),
                        echo=quiet)


def scored(filters: int, seed: int = 0) -> ExactScores:
    """`pipeline evaluate` of `train F k5 s` on its default fresh set: the exact and unseen accuracy."""
    cfg, bundle, _ = detector(filters, seed)
    default = {f.name: f.default for f in dataclasses.fields(EvaluateConfig)}
    X_test = make_synthetic(default["n"], default["width"], default["data_seed"])[0]
    return exact_scores(trained(filters, seed)[0], cfg.width, bundle.train.X, X_test)


def front() -> str:
    """README: seed 0 with 3 and with 4 filters, their exact and unseen accuracy, and `make run`'s capacity
    headline over 100 seeds."""
    main = MainConfig()
    small, large = main.small_filters, main.large_filters
    (h3, s3), (h4, s4) = ((trained(f)[1], scored(f)) for f in (small, large))
    summary = grid(seeds=main.capacity_seeds).summary
    return (f"With {small} filters, seed 0 fails: its training loss stops at {h3.train_loss[-1]:.2f} with "
            f"{h3.train_accuracy[-1]:.0%} of the training examples right, and it classifies {s3.unseen_accuracy:.1%} "
            f"of the {s3.distinct_sequences - s3.distinct_seen_in_training} sequences it never trained on "
            f"({s3.exact_accuracy:.1%} of the generator's whole distribution, computed exactly). With {large} "
            f"filters the same initial seed succeeds: loss {h4.train_loss[-1]:.2f}, {s4.unseen_accuracy:.1%} on the "
            f"unseen sequences, {s4.exact_accuracy:.1%} overall. Over {main.capacity_seeds} seeds: "
            f"\"{headline(summary, TAU)}\"\n")


def p_success_grid() -> str:
    """docs/capacity.md: the default grid's P(success) table, its range, the lottery fit, generalisation."""
    summary = grid().summary
    ks = sorted(summary["kernel_size"].unique())
    cells = summary.set_index(["filters", "kernel_size"])
    lines = ["| F | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for f in sorted(summary["filters"].unique()):
        lines.append(f"| {f} | " + " | ".join(f"{c.p_success:.3f} [{c.p_success_lo:.3f}, {c.p_success_hi:.3f}]"
                                              for c in (cells.loc[(f, k)] for k in ks)) + " |")
    ends = [summary[summary["filters"] == f]["p_success"] for f in (summary["filters"].min(), summary["filters"].max())]
    succ, fail = (summary[c].mean() for c in ("test_accuracy_success", "test_accuracy_failed"))
    cfg = CapacityConfig()
    X = make_synthetic(cfg.n, cfg.width, cfg.data_seed)[0]
    dist = enumerate_synthetic(cfg.width)
    seen = dist.seen(X)
    repeats = dist.repeats(make_synthetic(cfg.test_n, cfg.width, cfg.test_seed)[0], seen)
    return ("\n".join(lines) + f"\n\nP(success) [95% Wilson interval] over {int(summary['n'].iloc[0])} seeds each. "
            f"It rises steadily with F, from {ends[0].min():.2f}–{ends[0].max():.2f} with one filter to "
            f"{ends[1].min():.2f}–{ends[1].max():.2f} with eight. {lottery_text(grid().lottery)} "
            f"{generalisation_text(summary)} The training set holds {int(seen.sum())} of the {len(dist.X)} distinct "
            f"sequences, and {repeats} of the {cfg.test_n} rows of the sampled test set repeat one of them; on "
            f"that sampled set seeds that succeed score {succ:.3f} and seeds that fail {fail:.3f}.\n")


def epoch_line() -> str:
    """README: the line that `pipeline train` (3 filters, seed 0) prints at epoch 50."""
    return f"```text\nEpoch 50 had training loss {trained(3)[1].train_loss[49]:.4f}\n```\n"


def serve_answer() -> str:
    """docs/mlflow-ui.md: what the 4-filter detector (seed 0) answers to the serve block's input."""
    model, _ = trained(4)
    curl = (ROOT / "docs" / "mlflow-ui.md").read_text().split("-d '", 1)[1].split("'", 1)[0]  # the serve block's
    with torch.no_grad():
        p = class_probabilities(model(torch.tensor(json.loads(curl)["inputs"], dtype=torch.float32)))[0]
    return (f"It answers `{{\"predictions\": [{{\"probability_0\": {p[0]:.2f}, \"probability_1\": {p[1]:.2f}, "
            f"\"predicted_class\": {int(p.argmax())}, \"predicted_label\": \"0,+1,0\"}}]}}` (rounded here) for "
            "the 4-filter detector of seed 0.\n")


@functools.cache
def diagnosis():
    """`pipeline diagnose` of the k = 5 grid (F = 1..8, 200 seeds): 1,600 seeds."""
    return diagnose.run(DiagnoseConfig(capacity_run=grid((5,)).run_id, tracking_uri=store()), echo=quiet)


def minima_verdicts() -> str:
    """docs/minima.md: verdict shares per F, and the long run's escapes among the failed seeds."""
    d = diagnosis()
    lines = ["| F | solved | local minimum (smooth) | kink | saddle | still moving | long run: escaped / failed |",
             "|---|---|---|---|---|---|---|"]
    for r in d.by_config.itertuples(index=False):
        failed = d.table[(d.table["filters"] == r.filters) & ~d.table["success"]]
        shares = " | ".join("0" if v == 0 else f"{v:.3f}" for v in (r.solved, r[3], r.kink, r.saddle, r.plateau))
        lines.append(f"| {r.filters} | {shares} | {int(failed['escaped'].sum())} / {len(failed)} |")
    return "\n".join(lines) + "\n"


def minima_stalls() -> str:
    """docs/minima.md: what the failed seeds are, with the medians per verdict and the barriers."""
    d, cfg = diagnosis(), DiagnoseConfig(capacity_run="its defaults")
    failed = d.table[~d.table["success"]].assign(zigzag=lambda t: t["path_length"] / t["moved"].clip(lower=1e-12),
                                                 long_change=lambda t: t["long_loss"] - t["loss"])
    m = failed.groupby("verdict").median(numeric_only=True)
    counts = failed["verdict"].value_counts()
    minima = counts.get("local minimum", 0) + counts.get("kink", 0)
    escaped = failed[failed["escaped"]]
    smooth, kink = m.loc["local minimum"], m.loc["kink"]
    minima_drops = failed[failed["verdict"].isin(["local minimum", "kink"])][["drop_gradient", "drop_curvature"]]
    return (f"{minima} of the {len(failed)} stalls ({minima / len(failed):.0%}) are minima, and "
            f"{plural(counts.get('saddle', 0), 'saddle')}. {counts.get('local minimum', 0)} are smooth minima (median "
            f"gradient {smooth.grad_norm:.2g} at the end, {smooth.mean_grad_norm:.2g} averaged over the last "
            f"{cfg.last_epochs} epochs, smallest eigenvalue {smooth.hessian_min:+.2g}); {counts.get('kink', 0)} sit "
            f"on a kink of the ReLU/max-pool loss, where the final gradient stays {kink.grad_norm:.2g} but averages "
            f"to {kink.mean_grad_norm:.2g} over the last {cfg.last_epochs} epochs as the iterate hops back and "
            f"forth across a switch (a path {kink.zigzag:.1f} times its net move; smallest eigenvalue "
            f"{kink.hessian_min:+.2g}). Ten times longer training at a tenth of the rate frees only {len(escaped)} "
            f"of {len(failed)} ({len(escaped) / len(failed):.1%}), all at F ≥ {escaped['filters'].min()}; the "
            f"minima change their loss by a median {smooth.long_change:+.2g} (smooth) and "
            f"{kink.long_change:+.2g} (kink) and stay. The largest drop any line search finds at a minimum is "
            f"{minima_drops.max().max():.2g} "
            f"(δ = {cfg.delta:g}, within r = {cfg.radius:g}). Every straight path from a stuck seed to a solved one "
            f"rises over a barrier ({len(d.paths)} pairs, {int((d.paths['barrier'] > cfg.delta).sum())} above δ: "
            f"median {d.paths['barrier'].median():.2f}, largest {d.paths['barrier'].max():.2f} in loss).\n")


def minima_tolerances() -> str:
    """docs/minima.md: how the verdict shares move when each tolerance changes tenfold."""
    sens = diagnosis().sensitivity
    base = sens[sens["tolerance"] == "baseline"].iloc[0]
    shares = ["solved", "local minimum", "kink", "saddle", "plateau"]

    def row(tolerance: str, factor: float):
        return sens[(sens["tolerance"] == tolerance) & (sens["factor"] == factor)].iloc[0]

    small_moves = pd.concat([row("delta", 0.1), row("delta", 10.0), row("radius", 0.1)], axis=1).T[shares]
    largest = 100 * (small_moves - base[shares]).abs().to_numpy(float).max()
    wide, short, whole = row("radius", 10.0), row("last_epochs", 0.1), row("last_epochs", 10.0)
    return (f"The shares are stable when each tolerance changes tenfold: δ = {row('delta', 0.1).value:g} or "
            f"{row('delta', 10.0).value:g} and r = {row('radius', 0.1).value:g} move no share by more than "
            f"{largest:.1f} points; r = {wide.value:g} turns {wide.saddle:.2%} of the seeds into saddles. L moves "
            f"seeds only between the two kinds of minimum: L = {short.value:g} calls {short.kink:.0%} of the seeds "
            f"kinks instead of {base.kink:.0%}, and L = {whole.value:g} (the whole run) leaves only "
            f"{whole['local minimum']:.1%} of the seeds smooth minima; the minimum share stays "
            f"{sens['[minimum]'].min():.3f}–{sens['[minimum]'].max():.3f}.\n")


def minima_anatomy(filters: int = 3) -> str:
    """docs/minima.md: the filter classes of failed and solved seeds at F = 3, and the ticket fits."""
    d = diagnosis()
    cls = d.classes[d.classes["filters"] == filters].set_index("outcome")
    fail, solved = cls.loc["failed"], cls.loc["solved"]
    per_f = d.tickets[d.tickets["filters"].astype(str) != "all"]
    weak = per_f[per_f["p_value"] >= 0.05]
    strong = per_f[per_f["p_value"] < 0.05]
    return (f"Inside the stalled networks at F = {filters} ({int(fail.n_seeds)} failed seeds, {int(fail.n_filters)} "
            f"filters): {fail.detector:.0%} of the filters are detectors, {fail['wrong pattern']:.0%} prefer a wrong "
            f"pattern, {fail.dead:.0%} are dead and {fail.redundant:.0%} redundant; solved seeds have "
            f"{solved.detector:.0%} detectors, {solved['wrong pattern']:.0%} wrong-pattern helpers, {solved.dead:.0%} "
            f"dead. A better best initial alignment with 0, +1, 0 raises the odds of success at every F (logistic "
            f"slope {per_f['slope'].min():.1f}–{per_f['slope'].max():.1f}, p ≤ {strong['p_value'].max():.2g} for "
            f"every F but {', '.join(str(f) for f in weak['filters'])}), but it ranks seeds only moderately "
            f"(AUC {per_f['auc'].min():.2f}–{per_f['auc'].max():.2f}).\n")


@functools.cache
def published_task():
    """`pipeline capacity-pattern` with no options: the published task, F = 1..7 x 500 seeds, both variants."""
    return replication.run(PatternCapacityConfig(tracking_uri=store()), echo=quiet)


def replication_table() -> str:
    """docs/minima.md: our mean test accuracy per F and variant beside the published one, and P(>= 99%)."""
    s = published_task().summary
    head = ("| F | trained conv: ours [95%] | published | P(≥ 99%) | frozen conv: ours [95%] | published "
            "| P(≥ 99%) |\n|---|---|---|---|---|---|---|\n")
    rows = []
    for f in sorted(s["filters"].unique()):
        cells = []
        for r in s[s["filters"] == f].set_index("variant").loc[["trained", "frozen"]].itertuples():
            cells.append(f"{100 * r.mean_accuracy:.1f} [{100 * r.mean_accuracy_lo:.1f}, "
                         f"{100 * r.mean_accuracy_hi:.1f}] | {100 * r.published_mean_accuracy:.1f} | {r.p_success:.2f}")
        rows.append(f"| {f} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def replication_story() -> str:
    """docs/minima.md: how far ours and the published means are apart, and the capacity effect in numbers."""
    s = published_task().summary.assign(inside=lambda t: (t["published_mean_accuracy"] >= t["mean_accuracy_lo"])
                                        & (t["published_mean_accuracy"] <= t["mean_accuracy_hi"]))
    outside = "; ".join(f"{r.variant} F = {r.filters}: {100 * r.published_mean_accuracy:.1f} against "
                        f"[{100 * r.mean_accuracy_lo:.2f}, {100 * r.mean_accuracy_hi:.2f}]"
                        for r in s[~s["inside"]].itertuples())
    trained = s[s["variant"] == "trained"].sort_values("filters")
    lo, hi = trained.iloc[0], trained.iloc[-1]
    return (f"The differences run from {100 * s['difference'].min():+.1f} to {100 * s['difference'].max():+.1f} "
            f"points; {int(s['inside'].sum())} of the {len(s)} published means lie inside our 95% intervals"
            + (f" and the other {int((~s['inside']).sum())} ({outside}) miss by less than the reading error"
               if outside else "")
            + f". The capacity effect replicates: trained filters go from {100 * lo.mean_accuracy:.0f}% "
            f"(P(≥ 99%) = {lo.p_success:.2f}) to {100 * hi.mean_accuracy:.1f}% ({hi.p_success:.3f}) as F goes from "
            f"{lo.filters} to {hi.filters}.\n")


@functools.cache
def digits_grid():
    """`pipeline capacity --dataset digits --filters 1,2,4,8 --kernel-sizes 3,5 --seeds 16` (LeNet, 30 epochs)."""
    return grid((3, 5), 16, "digits", filters=(1, 2, 4, 8))


def digits_table() -> str:
    """docs/images.md: the digits capacity table as the stage prints it, and the spread with one filter."""
    result = digits_grid()
    cfg = CapacityConfig(dataset="digits")
    lines = image_stats.report(result.summary, cfg.margin, 1.0, 1)
    table = lines[3:lines.index("", 3)]
    one = result.table[result.table["filters"] == 1]["test_accuracy"]
    return ("```text\n" + "\n".join(table) + "\n```\n\nWith one filter per layer, seeds that stay at chance "
            f"({one.min():.3f}) sit beside seeds at {one.max():.2f}: the lottery is wide, and bigger layers make bad "
            "runs rarer.\n")


# the README's ../shared/data/mnist (MNIST's test split as IDX files); $PIPELINE_MNIST_DIR elsewhere
MNIST = Path(os.environ.get("PIPELINE_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))
CHANCE = 0.2  # "at chance": below this test accuracy, with 10 classes


def mnist_chance() -> str:
    """docs/images.md: single-filter 5x5 nets on real MNIST images, 16 seeds, 5 epochs: how many stay at chance."""
    if not MNIST.is_dir():
        raise FileNotFoundError(f"{MNIST} is missing: set PIPELINE_MNIST_DIR to MNIST's IDX folder")
    result = grid((5,), 16, recipe="mnist-small", data_dir=str(MNIST), filters=(1,), epochs=5)
    acc = result.table["test_accuracy"]
    return (f"On the real MNIST images (`--recipe mnist-small --data-dir ../shared/data/mnist`, 16 seeds, 5 epochs) "
            f"{int((acc < CHANCE).sum())} of {len(acc)} single-filter 5x5 nets stay at chance (test accuracy below "
            f"{CHANCE:g}; the others reach {acc[acc >= CHANCE].min():.2f}–{acc.max():.2f}).\n")


BLOCKS = {"front": front, "epoch-line": epoch_line, "p-success-grid": p_success_grid, "serve-answer": serve_answer,
          "minima-verdicts": minima_verdicts, "minima-stalls": minima_stalls, "minima-tolerances": minima_tolerances,
          "minima-anatomy": minima_anatomy, "replication-table": replication_table,
          "replication-story": replication_story, "digits-table": digits_table, "mnist-chance": mnist_chance}
SLOW = {"minima-verdicts": "diagnoses 1,600 seeds (about 2 minutes on 2 cores)",
        "minima-stalls": "diagnoses 1,600 seeds", "minima-tolerances": "diagnoses 1,600 seeds",
        "minima-anatomy": "diagnoses 1,600 seeds",
        "replication-table": "7,000 trainings of the published task (1-2 minutes)",
        "replication-story": "7,000 trainings of the published task",
        "digits-table": "128 LeNet trainings on digits (about 70 s)",
        "mnist-chance": "16 trainings on MNIST images (needs ../shared/data/mnist)"}
