"""The model zoo by name, parameterised by filter counts and kernel sizes.

``build_model(name, ...)`` is the one constructor the stages use; the initial weights
depend only on ``torch.manual_seed(seed)`` set just before it (the multi-seed trainer
relies on this to reproduce ``pipeline train --seed s`` exactly).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models import convnets
from pipeline.models.detector import Detector1d


def _detector1d(input_shape, num_outputs, filters, kernel_size, **_):
    if len(input_shape) != 2:
        raise ConfigError(f"detector1d needs 1D inputs (C, W), got shape {tuple(input_shape)}")
    if num_outputs != 1:
        raise ConfigError("detector1d is a binary detector (one logit)")
    if len(filters) != 1 or len(kernel_size) != 1:
        raise ConfigError("detector1d has one conv layer: give one filter count and one kernel size")
    return Detector1d(filters[0], kernel_size[0], in_channels=input_shape[0])


MODELS: dict[str, Callable[..., nn.Module]] = {
    "detector1d": _detector1d,
    **{name: convnets.factory(name) for name in convnets.LAYOUTS},
}


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


def memory_needed(name: str, input_shape: tuple[int, ...], num_outputs: int, filters: tuple[int, ...],
                  kernel_size: tuple[int, ...], batch: int, **options) -> int:
    """Bytes that training model ``name`` on batches of ``batch`` takes: parameters with their gradients
    and two optimiser buffers, and every layer's output with its gradient and a temporary.

    The parameters are counted on a copy on the meta device (no memory). When they fit, the layers'
    output sizes are measured on one input through a CPU copy (running the model on the meta device
    would load torch's meta kernels: 1.6 s, on every run); when they do not, the caller refuses anyway.
    """
    from pipeline.config.checks import MEMORY_SHARE, available_memory

    with torch.device("meta"):
        shape_only = build_model(name, input_shape, num_outputs, filters, kernel_size, **options)
    params = count_parameters(shape_only)
    if 4 * 4 * params > MEMORY_SHARE * available_memory():
        return 4 * 4 * params
    outputs: list[int] = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # the caller's random state is left as it was
        model = build_model(name, input_shape, num_outputs, filters, kernel_size, **options).eval()
        hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.numel()))
                 for m in model.modules() if not list(m.children())]
        model(torch.zeros((1, *input_shape)))
    for h in hooks:
        h.remove()
    return 4 * (4 * params + 3 * batch * sum(outputs))


def first_conv(model: nn.Module) -> nn.Module:
    """The first convolution of a model (whose filters the stages draw)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return m
    raise ValueError("model has no convolution")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
