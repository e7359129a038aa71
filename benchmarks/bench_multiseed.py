"""Benchmark: the lab's one-at-a-time training loop against `multiseed`, in ms per training.

    python benchmarks/bench_multiseed.py            # S = 64, 256, 1024; 1 and 2 threads
    python benchmarks/bench_multiseed.py --quick    # a smoke run in a few seconds

Both sides train the synthetic recipe's detector (F=3, k=5, N=75, W=20, full-batch SGD,
500 epochs) from seeds 0, 1, ...; the one-at-a-time side is the lab's loop (model,
torch.optim.SGD, BCEWithLogitsLoss, backward, step), the fastest way torch trains one model.
Each cell is the best of ``--repeats`` timings; the speed-up divides the loop's time by
multiseed's at the same thread count. ``multiseed`` is the CPU's default engine, the compiled
loop (``capacity/fused.py``); ``multiseed torch`` the same trainings on torch's ops
(``capacity/kernel.py``, the engine off the CPU), timed beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from pipeline.data.synthetic import make_synthetic  # noqa: E402
from pipeline.capacity.multiseed import train_seeds  # noqa: E402
from pipeline.models.registry import build_model  # noqa: E402


def lab_loop(filters: int, k: int, seed: int, X, y, epochs: int) -> float:
    """One training, as the lab writes it; returns the last epoch's loss."""
    model = build_model("detector1d", (1, X.shape[2]), 1, (filters,), (k,), seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    criterion = torch.nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        opt.zero_grad()
        loss = criterion(model(X), y)
        loss.backward()
        opt.step()
    return loss.item()


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 50 epochs, S = 16, 64, 1 thread")
    ap.add_argument("--filters", type=int, default=3)
    ap.add_argument("--kernel-size", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--sizes", default="64,256,1024", help="seeds per multiseed call")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--loop-runs", type=int, default=4, help="one-at-a-time trainings timed per thread count")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.sizes, args.threads, args.loop_runs, args.repeats = 50, "16,64", "1", 2, 1
    sizes = [int(s) for s in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    F, k, E = args.filters, args.kernel_size, args.epochs
    X, y = make_synthetic(75, 20, 0)

    rows = []  # (method, S, threads, ms per training)
    for t in threads:
        torch.set_num_threads(t)
        lab_loop(F, k, 0, X, y, 5)  # warm-up
        train_seeds(F, k, range(8), X, y, epochs=5)
        loop = best_of(args.repeats, lambda: [lab_loop(F, k, s, X, y, E) for s in range(args.loop_runs)])
        rows.append(("one-at-a-time", 1, t, 1000 * loop / args.loop_runs))
        for S in sizes:
            for engine in ("fused", "torch"):  # the compiled loop (the CPU's default) and torch's ops
                sec = best_of(args.repeats, lambda: train_seeds(F, k, range(S), X, y, epochs=E, engine=engine))
                rows.append(("multiseed" if engine == "fused" else "multiseed torch", S, t, 1000 * sec / S))

    print(f"multiseed benchmark: Detector1d(F={F}, k={k}), {E} epochs, N=75, W=20, "
          f"torch {torch.__version__}; ms/run = milliseconds per {E}-epoch training")
    print(f"{'method':<15}{'S':>6}{'threads':>9}{'ms/run':>11}{'speed-up':>11}")
    base = {t: ms for m, _, t, ms in rows if m == "one-at-a-time"}
    for method, S, t, ms in rows:
        print(f"{method:<15}{S:>6}{t:>9}{ms:>11.3f}{base[t] / ms:>10.0f}x")
    for method, S, t, ms in rows:
        if method == "multiseed torch":
            fused = next(r[3] for r in rows if r[0] == "multiseed" and r[1:3] == (S, t))
            print(f"compiled engine at S={S}, {t} thread(s): {ms / fused:.1f}x torch's ops")
    best = min((r for r in rows if r[0] == "multiseed"), key=lambda r: r[3])
    slowest_loop = max(base.values())
    fastest_loop = min(base.values())
    print(f"best multiseed: {best[3]:.3f} ms/run at S={best[1]}, {best[2]} thread(s); "
          f"{fastest_loop / best[3]:.0f}x the fastest one-at-a-time loop ({fastest_loop:.1f} ms/run; "
          f"slowest {slowest_loop:.1f})")


if __name__ == "__main__":
    main()
