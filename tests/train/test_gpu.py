"""CUDA: the mnist-small recipe's epoch time on a GPU (skips where there is none)."""
from __future__ import annotations

import time

import pytest
import torch

from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.data.bundle import DataBundle, Split
from pipeline.models.registry import build_model
from pipeline.train.batching import pick_device
from pipeline.train.loop import fit

from imagefiles import fake_images

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")]


def test_mnist_small_epoch_time_on_cuda(record_property):
    X, y = fake_images(66_000)  # MNIST-sized: 60,000 to train on, 6,000 to validate
    X = torch.from_numpy(X).unsqueeze(1)
    y = torch.from_numpy(y.astype("int64"))
    bundle = DataBundle("mnist", "multiclass", Split(X[:60_000], y[:60_000]), Split(X[60_000:], y[60_000:]),
                        tuple("0123456789"))
    cfg = resolve(TrainConfig(recipe="mnist-small", epochs=3, device="auto", log_interval=0))
    device = pick_device(cfg.device)
    assert device.type == "cuda"
    model = build_model(cfg.model, bundle.input_shape, 10, cfg.filters, cfg.kernel_size, seed=0).to(device)
    stamps = [time.perf_counter()]

    def on_epoch(epoch, metrics):
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    history = fit(model, bundle, cfg, device, on_epoch=on_epoch, echo=lambda _: None)
    epoch_s = [b - a for a, b in zip(stamps, stamps[1:])]
    record_property("mnist_small_cuda_epoch_s", min(epoch_s))
    print(f"\nmnist-small on {torch.cuda.get_device_name(0)}: epoch times {[round(t, 3) for t in epoch_s]} s "
          f"(60,000 images, batch 100)")
    assert history.val_accuracy[-1] > 0.9  # the bright row gives the label away: it must learn it
    assert min(epoch_s) < 30
