"""Minibatch training shows a progress bar per epoch, with the current loss, on a terminal only."""
from __future__ import annotations

import io
import sys

import torch

from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.data.bundle import DataBundle, Split
from pipeline.models.registry import build_model
from pipeline.train.loop import fit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _train(progress: bool, log_interval: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    bundle = DataBundle("images", "multiclass", Split(X[:48], y[:48]), Split(X[48:], y[48:]), ("a", "b", "c"), {})
    cfg = resolve(TrainConfig(recipe="digits-lenet", batch_size=8, epochs=2, log_interval=log_interval, seed=0,
                              device="cpu"))
    model = build_model(cfg.model, bundle.input_shape, 3, cfg.filters, cfg.kernel_size, seed=0, padding=cfg.padding)
    printed: list[str] = []
    fit(model, bundle, cfg, torch.device("cpu"), echo=printed.append, progress=progress)
    return printed


def test_a_bar_per_epoch_with_the_loss_on_a_terminal(monkeypatch):
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    printed = _train(progress=True, log_interval=2)
    bars = err.getvalue()
    assert "epoch 1/2" in bars and "epoch 2/2" in bars and "loss=" in bars and "/6 " in bars
    assert [ln for ln in printed if ln.startswith("Train Epoch: 1")]  # the labs' lines still printed, beside it


def test_no_bar_off_a_terminal_or_when_not_asked(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    _train(progress=True)
    assert err.getvalue() == ""
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    _train(progress=False)
    assert tty.getvalue() == ""
