"""The model zoo, parameterised by filter counts and kernel sizes.

``build_model(name, ...)`` is the one constructor the stages use; the initial weights
depend only on ``torch.manual_seed(seed)`` set just before it (the multi-seed trainer
relies on this to reproduce ``pipeline train --seed s`` exactly).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pipeline.config import ConfigError


class Detector1d(nn.Module):
    """Conv1d(1, F, k, padding=k//2) -> ReLU -> global max pool -> Flatten -> Linear(F, 1)."""

    def __init__(self, filters: int = 3, kernel_size: int = 5, in_channels: int = 1):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel size must be odd, got {kernel_size}")
        self.conv = nn.Conv1d(in_channels, filters, kernel_size, padding=kernel_size // 2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool1d(1)  # = the lab's MaxPool1d(W) for any width W
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(filters, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, W) -> (N, 1) logits
        return self.linear(self.flatten(self.pool(self.relu(self.conv(x)))))

    def first_conv(self) -> nn.Module:
        return self.conv


MODELS: dict[str, Callable[..., nn.Module]] = {}


def _detector1d(input_shape, num_outputs, filters, kernel_size, **_):
    if len(input_shape) != 2:
        raise ConfigError(f"detector1d needs 1D inputs (C, W), got shape {tuple(input_shape)}")
    if num_outputs != 1:
        raise ConfigError("detector1d is a binary detector (one logit)")
    if len(filters) != 1 or len(kernel_size) != 1:
        raise ConfigError("detector1d has one conv layer: give one filter count and one kernel size")
    return Detector1d(filters[0], kernel_size[0], in_channels=input_shape[0])


MODELS["detector1d"] = _detector1d


def _register_2d() -> None:
    from pipeline import models2d

    for name in models2d.LAYOUTS:
        MODELS[name] = models2d.factory(name)


_register_2d()


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_outputs: int,
    filters: tuple[int, ...],
    kernel_size: tuple[int, ...],
    seed: int | None = None,
    **options,
) -> nn.Module:
    """Construct model ``name``; with ``seed``, its weights are those of torch.manual_seed(seed)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}") from None
    if seed is not None:
        torch.manual_seed(seed)
    return factory(tuple(input_shape), num_outputs, tuple(filters), tuple(kernel_size), **options)


def first_conv(model: nn.Module) -> nn.Module:
    """The first convolution of a model (whose filters the stages draw)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return m
    raise ValueError("model has no convolution")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """A table of every leaf layer: name, type, output shape (one example) and parameter count."""
    rows: list[tuple[str, str, str, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            def hook(mod, _inp, out, name=name):
                rows.append((name, type(mod).__name__, "x".join(map(str, out.shape[1:])),
                             sum(p.numel() for p in mod.parameters())))
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    header = ("layer", "type", "output shape", "parameters")
    rows = [("input", "", "x".join(map(str, input_shape)), 0), *rows,
            ("output", "", "x".join(map(str, out.shape[1:])), 0)]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(4)]
    fmt = "  ".join(f"{{:{'>' if i == 3 else '<'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*(str(v) for v in r)) for r in rows]
    lines.append(f"total parameters: {count_parameters(model):,}")
    return "\n".join(lines) + "\n"
