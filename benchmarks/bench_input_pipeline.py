"""Input pipeline: the labs' DataLoader + ToTensor against this project's tensor minibatches.

One MNIST-sized epoch (60,000 synthetic 28x28 images written as MNIST's IDX files, so
nothing is downloaded) of the mnist-small model, batch 100, SGD, through both paths in one
run, from the same initial weights:
- labs:    torchvision.datasets.MNIST(transform=ToTensor()) + DataLoader(shuffle=True):
           one PIL image and one ToTensor call per sample, in Python;
- project: the split as one uint8 tensor, minibatches gathered by an index permutation
           and converted on the device (``pipeline.train.batching.minibatches``, what ``fit`` uses).
Prints the data time per epoch and the total for each, and checks the target: this
project's data overhead is at most 5% of its epoch time. Where a CUDA GPU is available it
also times the project's path on it.

Run: python benchmarks/bench_input_pipeline.py [--quick] [--n 60000] [--threads 0] [--repeat 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.data.bundle import DataBundle, Split  # noqa: E402
from pipeline.data.formats import write_idx  # noqa: E402
from pipeline.models.registry import build_model  # noqa: E402
from pipeline.train.batching import minibatches  # noqa: E402

BATCH = 100  # mnist-small's batch size
TARGET = 0.05  # project's data time / epoch time


def synthetic_mnist(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_epoch(batches: Iterable, step: Callable, device: torch.device) -> tuple[float, float]:
    """(seconds spent producing batches, seconds for the whole epoch) of one pass."""
    data = 0.0
    sync(device)
    start = time.perf_counter()
    it = iter(batches)
    while True:
        t0 = time.perf_counter()
        try:
            xb, yb = next(it)
        except StopIteration:
            break
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        sync(device)
        data += time.perf_counter() - t0
        step(xb, yb)
    sync(device)
    return data, time.perf_counter() - start


def make_step(device: torch.device) -> tuple[torch.nn.Module, Callable]:
    model = build_model("smallconv", (1, 28, 28), 10, (8,), (5,), seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    criterion = torch.nn.CrossEntropyLoss()

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        criterion(model(xb), yb).backward()
        opt.step()

    return model, step


def labs_batches(root: Path) -> Iterable:
    from torchvision import datasets, transforms

    ds = datasets.MNIST(str(root), train=True, transform=transforms.ToTensor())
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def project_batches(X: torch.Tensor, y: torch.Tensor, device: torch.device) -> Iterable:
    bundle = DataBundle("mnist", "multiclass", Split(X, y), Split(X[:1], y[:1]), tuple("0123456789"))
    X, y = X.to(device), y.to(device)  # stored on the device, as fit does when it fits
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0)).to(device)
    return minibatches(X, y, BATCH, device, bundle.input_transform(device), order)


def row(name: str, data: float, total: float, n: int) -> str:
    return (f"{name:<32}{data:>8.3f}{total - data:>11.3f}{total:>10.3f}{100 * data / total:>11.1f}%"
            f"{1e6 * data / n:>12.1f}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000, help="images in the epoch (MNIST's training split: 60,000)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 6,000 images")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="epochs per path, alternating; the best is reported (shared machines are noisy)")
    args = ap.parse_args(argv)
    n = 6_000 if args.quick else args.n
    if args.quick:
        args.repeat = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    images, labels = synthetic_mnist(n)
    X = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 28, 28) uint8
    y = torch.from_numpy(labels.astype(np.int64))

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        write_idx(raw / "train-images-idx3-ubyte", images)
        write_idx(raw / "train-labels-idx1-ubyte", labels)
        write_idx(raw / "t10k-images-idx3-ubyte", images[:10])  # torchvision wants all four files
        write_idx(raw / "t10k-labels-idx1-ubyte", labels[:10])
        _, step = make_step(cpu)
        for xb, yb in project_batches(X[: 10 * BATCH], y[: 10 * BATCH], cpu):  # warm-up: allocator, kernels
            step(xb, yb)
        runs: dict[str, list[tuple[float, float]]] = {"labs": [], "ours": []}
        for _ in range(max(1, args.repeat)):  # alternate, so both paths see the same machine load
            _, step = make_step(cpu)
            runs["labs"].append(timed_epoch(labs_batches(Path(tmp)), step, cpu))
            _, step = make_step(cpu)
            runs["ours"].append(timed_epoch(project_batches(X, y, cpu), step, cpu))
    labs, ours = (min(runs[k], key=lambda r: r[1]) for k in ("labs", "ours"))  # the fastest epoch of each

    print(f"input pipeline: one epoch of {n:,} synthetic 28x28 images, mnist-small model, batch {BATCH}, "
          f"cpu, {torch.get_num_threads()} threads; best of {max(1, args.repeat)} epochs per path")
    print(f"{'path':<32}{'data s':>8}{'compute s':>11}{'epoch s':>10}{'data share':>12}{'data us/img':>12}")
    print(row("labs: DataLoader + ToTensor", *labs, n))
    print(row("project: tensors + index perm.", *ours, n))
    print(f"data time {labs[0] / ours[0]:.0f}x less; epoch {labs[1] / ours[1]:.2f}x faster")
    share = ours[0] / ours[1]
    print(f"target: project data overhead <= {TARGET:.0%} of its epoch time: "
          f"{'met' if share <= TARGET else 'NOT met'} ({share:.1%})")
    result = {"labs_data_s": labs[0], "labs_epoch_s": labs[1], "project_data_s": ours[0],
              "project_epoch_s": ours[1], "project_data_share": share}
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        _, step = make_step(gpu)
        timed_epoch(project_batches(X[: 10 * BATCH], y[: 10 * BATCH], gpu), step, gpu)  # warm-up
        _, step = make_step(gpu)
        data, total = timed_epoch(project_batches(X, y, gpu), step, gpu)
        print(row(f"project on {torch.cuda.get_device_name(0)[:20]}", data, total, n))
        result.update(gpu_data_s=data, gpu_epoch_s=total)
    else:
        print("cuda: skipped (no CUDA GPU on this machine)")
    return result


if __name__ == "__main__":
    main()
