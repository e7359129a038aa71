"""Benchmark: S seeds of a 2D ConvNet trained at once against a loop over seeds, in ms per seed-epoch.

    python benchmarks/bench_image_multiseed.py            # S = 16: smallconv on 8x8 digits, lenet on 28x28
    python benchmarks/bench_image_multiseed.py --quick    # a smoke run in a few seconds

Rows:
* ``loop``: `pipeline train`'s loop (``train.loop.fit``) once per seed, what S runs of
  ``pipeline train --seed s`` do without MLflow;
* ``batched``: ``capacity.images.trainer.train_seeds``, the S seeds as one computation
  (grouped convolutions), with the same minibatches, optimizer and per-epoch scoring;
* ``step: grouped`` / ``step: torch.func``: the design choice alone, one training step of
  all S seeds on the same minibatches, through ``StackedNet`` (grouped convolutions, batched
  matmuls) and through ``torch.func`` (``vmap`` of ``functional_call`` over
  ``stack_module_state``), both with ``torch.optim`` on the stacked tensors.

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
from pipeline.train.loop import fit, make_optimizer  # noqa: E402
from pipeline.train.stage import make_model  # noqa: E402


def random_images(n: int, size: int) -> DataBundle:
    """MNIST-shaped random data: n training and n/10 validation images of size x size, 10 classes."""
    g = torch.Generator().manual_seed(0)

    def split(m: int) -> Split:
        return Split(torch.randint(0, 256, (m, 1, size, size), generator=g, dtype=torch.uint8),
                     torch.randint(0, 10, (m,), generator=g))

    return DataBundle("mnist", "multiclass", split(n), split(n // 10), tuple(map(str, range(10))))


def setups(quick: bool) -> list[tuple[str, TrainConfig, DataBundle]]:
    quiet = dict(print_every=0, log_interval=0, image_every=0, device="cpu")
    # what `pipeline capacity --dataset digits --model smallconv` trains: the digits recipe's batches and SGD
    digits = resolve(TrainConfig(dataset="digits", model="smallconv", filters=(8,), kernel_size=(5,), epochs=1, **quiet))
    lenet = resolve(TrainConfig(recipe="mnist-lenet", epochs=1, **quiet))  # lenet (6, 16), k=5, batch 100
    n28 = 400 if quick else 5000
    return [("smallconv, 8x8 digits", digits, load_bundle(digits)),
            (f"lenet, 28x28 ({n28} images)", lenet, random_images(n28, 28))]


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: S = 4, 1 repeat, few steps")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="training steps timed per design-choice row")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.steps, args.repeats = 4, 1, 3, 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    seeds = list(range(args.seeds))
    print(f"image multi-seed benchmark: S = {args.seeds} seeds, {args.epochs} epoch(s), {args.threads} thread(s), "
          f"{device}, torch {torch.__version__}; ms per seed-epoch (design rows: ms per seed-step)")
    print(f"{'model, data':<30}{'method':<20}{'ms':>10}{'speed-up':>10}")
    for name, cfg, bundle in setups(args.quick):
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
        n_steps = len(bundle.train) // cfg.batch_size  # full minibatches only
        steps = min(args.steps, n_steps)
        loop_over_seeds(cfg, bundle, seeds[:1], device)  # warm-up
        train_seeds(dataclasses.replace(cfg, epochs=1), bundle, seeds, device)
        loop = best_of(args.repeats, lambda: loop_over_seeds(cfg, bundle, seeds, device))
        batched = best_of(args.repeats, lambda: train_seeds(cfg, bundle, seeds, device))
        grouped, functorch = step_functions(cfg, bundle, seeds, device, steps)
        grouped(), functorch()  # warm-up
        t_grouped = best_of(args.repeats, grouped)
        t_func = best_of(args.repeats, functorch)
        per_epoch = 1000 / (args.seeds * args.epochs)
        per_step = 1000 / (args.seeds * steps)
        for method, ms, base in (("loop over seeds", loop * per_epoch, loop * per_epoch),
                                 ("batched", batched * per_epoch, loop * per_epoch),
                                 ("step: grouped", t_grouped * per_step, t_grouped * per_step),
                                 ("step: torch.func", t_func * per_step, t_grouped * per_step)):
            print(f"{name:<30}{method:<20}{ms:>10.2f}{base / ms:>9.1f}x")
        print(f"{name}: batched is {loop / batched:.1f}x the loop; grouped steps are "
              f"{t_func / t_grouped:.2f}x as fast as torch.func's")


if __name__ == "__main__":
    main()
