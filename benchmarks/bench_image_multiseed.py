"""Benchmark: S seeds of a 2D ConvNet trained at once against a loop over seeds, in ms per seed-epoch.

    python benchmarks/bench_image_multiseed.py            # every image recipe's net, and smallconv on 8x8 digits
    python benchmarks/bench_image_multiseed.py --quick    # a smoke run
    python benchmarks/bench_image_multiseed.py --design   # also grouped convolutions against torch.func
    python benchmarks/bench_image_multiseed.py --only 8x8 --repeats 7   # one row: smallconv on the digits
    python benchmarks/bench_image_multiseed.py --groups   # also seeds per stacked net, 16 seeds (trainer.MIN_GROUP)

Rows, one per net (16 seeds of smallconv on the 8x8 digits; 4 seeds of each image recipe's net
on 1,280 images of its size), timed side by side in one run, loop and batched in turn
(``side_by_side``: the shared test machine's load changes over seconds):
* ``loop``: `pipeline train`'s loop (``train.loop.fit``) once per seed, what S runs of
  ``pipeline train --seed s`` do without MLflow;
* ``batched``: ``capacity.images.trainer.train_seeds`` with ``--strategy auto`` (grouped, vmap or
  loop, timed on the first minibatch; its choice is printed), with the same minibatches,
  optimizer and per-epoch scoring;
* ``multi-cell grid vs cell by cell``: a grid's cells of one k as one zero-padded computation
  against cell by cell, and the share of the data pass that cells of other k could share
  (``multi_cell``: measured, not built);
* ``--groups``: 16 seeds of each 28x28 and 32x32 row, ms per seed-epoch, for the loop with the threads split
  between seeds (``--strategy loop``) and grouped channels-last with 2, 4 and 8 seeds per stacked net:
  what ``trainer.MIN_GROUP`` rests on;
* ``allocator``: mnist-rmsprop's net, 3 seeds grouped, 2 epochs of 1,280 images, in two fresh processes, with
  glibc's default thresholds and with ``pipeline.train.memory``'s (what the CLI sets): each epoch's ms per seed-epoch;
* ``--design``: one training step of all S seeds through ``StackedNet`` (grouped
  convolutions, batched matmuls) and through ``torch.func`` (``vmap`` of ``functional_call``
  over ``stack_module_state``), both with ``torch.optim`` on the stacked tensors.

The 28x28 images are random pixels (the time does not depend on what they show), so the
benchmark runs anywhere. Each cell is the best of ``--repeats`` timings on ``--device``
(default cpu; cuda where there is a GPU).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench_multiseed import best_of  # noqa: E402 - this folder is on the path when run as a script
from pipeline.capacity.images.trainer import interleave, per_seed_loss, stacked_net, train_seeds  # noqa: E402
from pipeline.config.recipes import resolve  # noqa: E402
from pipeline.config.stages import TrainConfig  # noqa: E402
from pipeline.data.bundle import DataBundle, Split  # noqa: E402
from pipeline.data.load import load_bundle  # noqa: E402
from pipeline.train.batching import minibatches  # noqa: E402
from pipeline.train.loop import fit, make_optimizer  # noqa: E402
from pipeline.train.stage import make_model  # noqa: E402


def random_images(n: int, size: int, channels: int = 1) -> DataBundle:
    """MNIST-shaped random data: n training and n/10 validation images of size x size, 10 classes."""
    g = torch.Generator().manual_seed(0)

    def split(m: int) -> Split:
        return Split(torch.randint(0, 256, (m, channels, size, size), generator=g, dtype=torch.uint8),
                     torch.randint(0, 10, (m,), generator=g))

    return DataBundle("mnist" if channels == 1 else "cifar10", "multiclass", split(n), split(n // 10),
                      tuple(map(str, range(10))))


def setups(quick: bool) -> list[tuple[str, TrainConfig, DataBundle, int]]:
    """(name, config, data, seeds): smallconv on the 8x8 digits, then every image recipe's net on its image size."""
    quiet = dict(print_every=0, log_interval=0, image_every=0, device="cpu")
    # what `pipeline capacity --dataset digits --model smallconv` trains: the digits recipe's batches and SGD
    digits = resolve(TrainConfig(dataset="digits", model="smallconv", filters=(8,), kernel_size=(5,), epochs=1, **quiet))
    n = 256 if quick else 1280  # training images per seed-epoch on 28x28 / 32x32: a few minibatches
    rows = [("smallconv, 8x8 digits", digits, load_bundle(digits), 0)]
    for recipe in ("mnist-small", "mnist-lenet", "cifar-lenet", "mnist-rmsprop", "mnist-dropout"):
        cfg = resolve(TrainConfig(recipe=recipe, epochs=1, **quiet))
        channels, size = (3, 32) if recipe.startswith("cifar") else (1, 28)
        rows.append((f"{recipe} ({cfg.model}, {size}x{size})", cfg, random_images(n, size, channels), 4))
    return rows


def loop_over_seeds(cfg: TrainConfig, bundle: DataBundle, seeds, device) -> None:
    for s in seeds:
        c = dataclasses.replace(cfg, seed=s)
        fit(make_model(c, bundle).to(device), bundle, c, device, echo=lambda line: None)


def step_functions(cfg: TrainConfig, bundle: DataBundle, seeds, device, steps: int):
    """Two closures that run ``steps`` training steps of all seeds: through StackedNet, and through torch.func."""
    from torch.func import functional_call, stack_module_state, vmap

    S, bs = len(seeds), cfg.batch_size
    transform = bundle.input_transform(device)
    X, y = bundle.train.X.to(device), bundle.train.y.to(device)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    order = interleave(torch.stack([torch.randperm(len(X), generator=g) for g in gens]), bs).to(device)
    batches = [(transform(X[order[i:i + S * bs]]), y[order[i:i + S * bs]]) for i in range(0, steps * S * bs, S * bs)]

    net = stacked_net(cfg, bundle, seeds, device)
    opt = make_optimizer(cfg, net.parameters())

    def grouped() -> None:
        for xb, yb in batches:  # rows ordered (row, seed): (B·S, C, H, W) -> (B, S·C, H, W)
            opt.zero_grad(set_to_none=True)
            per_seed_loss(cfg.loss, net(xb.view(bs, -1, *xb.shape[2:])), yb.view(bs, S).T).sum().backward()
            opt.step()

    models = [make_model(dataclasses.replace(cfg, seed=s), bundle).to(device) for s in seeds]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    fopt = make_optimizer(cfg, params.values())
    forward = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)))

    def functorch() -> None:
        for xb, yb in batches:  # (B·S, ...) -> (S, B, C, H, W): each seed's rows
            fopt.zero_grad(set_to_none=True)
            x = xb.view(bs, S, *xb.shape[1:]).transpose(0, 1)
            out = forward(params, buffers, x)
            loss = F.cross_entropy(out.reshape(S * bs, -1), yb.view(bs, S).T.reshape(-1), reduction="none")
            loss.view(S, bs).mean(dim=1).sum().backward()
            fopt.step()

    return grouped, functorch


def side_by_side(repeats: int, first, second) -> tuple[float, float]:
    """The best of ``repeats`` timings of each, taken in turn: on a shared machine whose load
    changes over seconds, both see the same load."""
    pairs = [(best_of(1, first), best_of(1, second)) for _ in range(repeats)]
    return min(p[0] for p in pairs), min(p[1] for p in pairs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, fewer images")
    ap.add_argument("--seeds", type=int, default=16, help="seeds of the 8x8 digits row (28x28 rows: 4)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads for both; 0 (default): torch's, every core, as the image recipes run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--design", action="store_true", help="also time one step of grouped against torch.func")
    ap.add_argument("--groups", action="store_true", help="also the split loop against 2, 4 and 8 seeds per group")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="only the rows whose name contains this (e.g. smallconv); no multi-cell grid")
    ap.add_argument("--allocator-child", choices=("default", "kept"), help=argparse.SUPPRESS)  # one process's epochs
    args = ap.parse_args(argv)
    if args.allocator_child:
        return allocator_epochs(args.allocator_child == "kept", args.quick)
    if args.quick:
        args.repeats = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"image multi-seed benchmark: {args.epochs} epoch(s), {torch.get_num_threads()} thread(s), {device}, "
          f"torch {torch.__version__}; ms per seed-epoch, loop and batched timed side by side")
    print(f"{'model, data':<36}{'S':>4}{'loop':>10}{'batched':>10}{'speed-up':>10}  strategy")
    for name, cfg, bundle, S in [row for row in setups(args.quick) if args.only in row[0]]:
        cfg, seeds = dataclasses.replace(cfg, epochs=args.epochs), list(range(S or args.seeds))
        chosen = train_seeds(cfg, bundle, seeds, device).strategy  # warm-up, and auto's measurement (cached)
        loop_over_seeds(cfg, bundle, seeds[:1], device)
        loop, batched = side_by_side(args.repeats, lambda: loop_over_seeds(cfg, bundle, seeds, device),
                                     lambda: train_seeds(cfg, bundle, seeds, device))
        per = 1000 / (len(seeds) * args.epochs)
        print(f"{name:<36}{len(seeds):>4}{loop * per:>10.2f}{batched * per:>10.2f}{loop / batched:>9.1f}x  {chosen}")
        print(f"{name}: batched is {loop / batched:.1f}x the loop")
        if args.design:
            design(cfg, bundle, seeds, device, args.repeats)
        if args.groups and S:
            group_sizes(cfg, bundle, device, args.repeats)
    if not args.only:
        allocator(args.quick)
        for name, cfg, bundle, S in setups(True)[:2]:  # the 8x8 digits, and smallconv on 28x28 (mnist-small)
            multi_cell(name, cfg, bundle, S or args.seeds, device, args.repeats)


def allocator_epochs(kept: bool, quick: bool) -> None:
    """In this (fresh) process: mnist-rmsprop's net, 3 seeds grouped, 2 epochs; prints each epoch's ms per seed-epoch."""
    import time

    from pipeline.train.memory import keep_freed_memory

    if kept and keep_freed_memory():
        raise SystemExit("glibc refused the thresholds")
    name, cfg, bundle, _ = next(row for row in setups(quick) if "rmsprop" in row[0])
    stamps = [time.perf_counter()]
    train_seeds(dataclasses.replace(cfg, epochs=2), bundle, [0, 1, 2], torch.device("cpu"), seeds_at_once=3,
                strategy="grouped", on_epoch=lambda epoch, values: stamps.append(time.perf_counter()))
    print(" ".join(f"{1000 * (b - a) / 3:.0f}" for a, b in zip(stamps, stamps[1:])))


def allocator(quick: bool) -> None:
    """``allocator_epochs`` in two fresh processes: glibc's default thresholds, then ``pipeline.train.memory``'s."""
    import platform
    import subprocess

    if platform.libc_ver()[0] != "glibc":
        print("allocator: not measured (the C library is not glibc)")
        return
    epochs = {}
    for mode in ("default", "kept"):
        out = subprocess.run([sys.executable, __file__, "--allocator-child", mode, *["--quick"] * quick],
                             capture_output=True, text=True, check=True)
        epochs[mode] = out.stdout.split()
    print("allocator (mnist-rmsprop, 3 seeds grouped, ms per seed-epoch of epochs 1 and 2): glibc's thresholds "
          f"{' then '.join(epochs['default'])}, pipeline.train.memory's {' then '.join(epochs['kept'])}")


def group_sizes(cfg: TrainConfig, bundle: DataBundle, device, repeats: int, S: int = 16) -> None:
    """S seeds as the split loop (one seed per computation, the seeds side by side, a torch thread each) and
    grouped channels-last with 2, 4 and 8 seeds per stacked net, all timed in turn (``side_by_side``)."""
    seeds = list(range(S))
    runs = {"loop, split": lambda: train_seeds(cfg, bundle, seeds, device, strategy="loop"),
            **{f"{g} per group": lambda g=g: train_seeds(cfg, bundle, seeds, device, seeds_at_once=g,
                                                          strategy="grouped") for g in (2, 4, 8)}}
    for run in runs.values():
        run()  # warm-up
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], best_of(1, run))
    print(f"    {S} seeds, ms per seed-epoch: " + ", ".join(f"{name} {1000 * t / S:.1f}" for name, t in best.items()))


def multi_cell(name: str, cfg: TrainConfig, bundle: DataBundle, S: int, device, repeats: int,
               grid=(2, 4, 6, 8)) -> None:
    """The multi-cell grid against cell by cell: smallconv (``name``'s data), F in ``grid``, one k, S seeds.

    * cell by cell: ``train_seeds`` once per F, as ``pipeline capacity`` runs a grid;
    * one computation: the cells that share k as one stacked model of seeds x cells, each cell's
      filters zero-padded to the largest F (zero filters stay zero: their gradients are zero, so
      every cell would train as alone). Timed here by its best case, the largest cell's net for
      S x cells seeds: a padded filter costs what a real one costs.
    * the data pass that cells of different k could share: gathering and converting one
      epoch's minibatches of all S seeds, against the epoch it feeds.

    Measured on 2 cores (2 threads, 2026-12-07): on the 8x8 digits (16 seeds) cell by cell / one computation
    0.77-1.28x over four runs; on 28x28 (4 seeds) 0.64-0.78x; the data pass 0-1 % of an epoch. The padded model
    does more work than the cells (sum of F against cells x max F) and its activations leave the caches, which
    costs what fewer, larger operations save, and more than that on real-sized images; sharing the data pass
    would save at most its percent. Neither is built: ``pipeline capacity`` trains cell by cell.
    """
    seeds = list(range(S))
    cells = [dataclasses.replace(cfg, filters=(f,)) for f in grid]
    train_seeds(cells[-1], bundle, seeds * len(grid), device)  # warm-up, auto's choice
    by_cell = best_of(repeats, lambda: [train_seeds(c, bundle, seeds, device) for c in cells])
    padded = best_of(repeats, lambda: train_seeds(cells[-1], bundle, seeds * len(grid), device))
    order = interleave(torch.stack([torch.randperm(len(bundle.train)) for _ in seeds]), cfg.batch_size)
    transform = bundle.input_transform(device)
    data = best_of(repeats, lambda: list(minibatches(bundle.train.X, bundle.train.y, S * cfg.batch_size, device,
                                                     transform, order)))
    epoch = best_of(repeats, lambda: train_seeds(cells[-1], bundle, seeds, device))
    print(f"multi-cell grid vs cell by cell ({name}, F={','.join(map(str, grid))}, "
          f"k={cfg.kernel_size[0]}, {S} seeds): cell by cell {by_cell * 1000:.0f} ms, one padded computation "
          f"{padded * 1000:.0f} ms: {by_cell / padded:.2f}x; the data pass is {100 * data / epoch:.0f}% of an epoch")


def design(cfg: TrainConfig, bundle: DataBundle, seeds, device, repeats: int, steps: int = 5) -> None:
    """One training step of all seeds through StackedNet's grouped convolutions and through torch.func."""
    grouped, functorch = step_functions(cfg, bundle, seeds, device, min(steps, len(bundle.train) // cfg.batch_size))
    grouped(), functorch()  # warm-up
    t_grouped, t_func = best_of(repeats, grouped), best_of(repeats, functorch)
    print(f"    step: grouped steps are {t_func / t_grouped:.2f}x as fast as torch.func's")


if __name__ == "__main__":
    main()
