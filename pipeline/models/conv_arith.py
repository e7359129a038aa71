"""Conv arithmetic: the output size of convolutions and pools, so flatten sizes are computed.

H_out = floor((H_in + 2*padding - dilation*(kernel - 1) - 1) / stride + 1), the formula in
the docs of ``nn.Conv2d`` and ``nn.MaxPool2d``. ``trace`` walks a stack of layers and says
which layer a too-large kernel breaks, instead of letting PyTorch fail mid-forward.
"""
from __future__ import annotations

from typing import Iterable

from torch import nn

from pipeline.errors import ConfigError


def out_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of one spatial dimension (may be < 1: the kernel does not fit)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def layer_shape(layer: nn.Module, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(C, H, W) after ``layer``; layers that keep the shape (ReLU, BatchNorm, Dropout) pass it through."""
    c, h, w = shape
    if isinstance(layer, nn.Conv2d):
        if layer.padding == "same":
            return layer.out_channels, h, w
        k, s, p, d = (_pair(getattr(layer, a)) for a in ("kernel_size", "stride", "padding", "dilation"))
        return layer.out_channels, out_size(h, k[0], s[0], p[0], d[0]), out_size(w, k[1], s[1], p[1], d[1])
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(layer.kernel_size)
        s = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        p = _pair(layer.padding)
        d = _pair(getattr(layer, "dilation", 1))
        if getattr(layer, "ceil_mode", False):
            raise ValueError("ceil_mode pools are not supported by the conv arithmetic")
        return c, out_size(h, k[0], s[0], p[0], d[0]), out_size(w, k[1], s[1], p[1], d[1])
    return shape


def trace(layers: Iterable[tuple[str, nn.Module]], input_shape: tuple[int, int, int],
          model: str = "model") -> list[tuple[str, tuple[int, int, int]]]:
    """Output shape after each named layer; a layer whose window does not fit is a ConfigError naming it."""
    shape = tuple(input_shape)
    out = []
    for name, layer in layers:
        if isinstance(layer, nn.Conv2d) and layer.in_channels != shape[0]:
            raise ConfigError(f"{model}: {name} expects {layer.in_channels} input channels, got {shape[0]}")
        new = layer_shape(layer, shape)
        if min(new[1:]) < 1:
            k = _pair(layer.kernel_size)
            what = "kernel" if isinstance(layer, nn.Conv2d) else "pooling window"
            raise ConfigError(
                f"{model}: {what} {k[0]}x{k[1]} of {name} is too large for its {shape[1]}x{shape[2]} input "
                f"feature map (input {'x'.join(map(str, input_shape))}; try --padding same or a smaller "
                f"--kernel-size)"
            )
        shape = new
        out.append((name, shape))
    return out
