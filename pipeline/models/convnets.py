"""The labs' 2D ConvNets, parameterised by filter counts and kernel sizes.

Each lab's net is a ``Layout`` (where the 2x2 pools go, the head's hidden widths, its
defaults = the recipe's values) built by one function into a ``ConvNet2d``: conv stack ->
flatten -> MLP head. Flatten sizes come from the conv arithmetic (``conv_arith.trace``),
so any input size, kernel size or padding that fits works, and one that does not names
the layer it breaks.

Options shared by every layout:
- ``padding``: "same" (k//2, keeps H x W for odd k) or "valid" (none);
- ``dropout``: p of a Dropout2d after the last conv and of a Dropout after each hidden
  layer of the head (after the flatten when the head has none); 0 leaves them out;
- ``batch_norm``: BatchNorm2d after every conv;
- ``log_softmax``: end in log-softmax (for the NLL loss) instead of logits.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models.conv_arith import trace


@dataclass(frozen=True)
class Layout:
    """One lab's architecture and its defaults."""

    name: str
    pools: tuple[bool, ...]  # per conv layer: a 2x2 max pool follows it
    hidden: tuple[int, ...]  # widths of the head's hidden Linear layers
    filters: tuple[int, ...]  # default filter count per conv layer
    kernel_size: tuple[int, ...]  # default kernel size per conv layer
    padding: str = "valid"
    dropout: float = 0.0
    pool_before_relu: bool = False  # the dropout lab: conv -> pool -> ReLU (same values, lab's order)
    doc: str = ""


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("smallconv", pools=(True,), hidden=(), filters=(8,), kernel_size=(5,), padding="same",
               doc="mnist-small: Conv2d(1,8,5,padding=2) -> ReLU -> MaxPool2d(2) -> Linear(8*14*14, 10)"),
        Layout("lenet", pools=(True, True), hidden=(120, 84), filters=(6, 16), kernel_size=(5, 5),
               doc="LeNet: Conv(C,6,5) -> ReLU -> pool -> Conv(6,16,5) -> ReLU -> pool -> 120 -> 84 -> 10"),
        Layout("conv3", pools=(True, True, False), hidden=(64,), filters=(32, 64, 64), kernel_size=(3, 3, 3),
               doc="RMSprop lab: Conv(1,32,3) -> pool -> Conv(32,64,3) -> pool -> Conv(64,64,3) -> 64 -> 10"),
        Layout("dropoutnet", pools=(True, True), hidden=(50,), filters=(10, 20), kernel_size=(5, 5),
               dropout=0.5, pool_before_relu=True,
               doc="dropout lab: Conv(1,10,5) -> pool -> ReLU -> Conv(10,20,5) -> Dropout2d -> pool -> ReLU "
                   "-> 50 -> ReLU -> Dropout -> 10"),
    )
}


class ConvNet2d(nn.Module):
    """Conv feature stack -> flatten -> MLP head: the shape that every lab's 2D net shares."""

    def __init__(self, name: str, input_shape: tuple[int, int, int], features: list[tuple[str, nn.Module]],
                 head: list[tuple[str, nn.Module]], log_softmax: bool = False):
        super().__init__()
        self.name = name
        self.input_shape = tuple(input_shape)  # (C, H, W) it was built for
        self.features = nn.Sequential(OrderedDict(features))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(OrderedDict(head))
        self.log_softmax = log_softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        out = self.classifier(self.flatten(self.features(x)))
        return F.log_softmax(out, dim=1) if self.log_softmax else out

    def first_conv(self) -> nn.Conv2d:
        return self.features.conv1


def _per_layer(name: str, values: tuple[int, ...], n: int, what: str, example: str) -> tuple[int, ...]:
    if len(values) == 1 and what == "kernel size":
        return values * n  # one kernel size for every layer
    if len(values) != n:
        raise ConfigError(f"{name} has {n} conv layer{'s' * (n > 1)}: give {n} {what}{'s' * (n > 1)} "
                          f"(e.g. {example}), got {','.join(map(str, values))}")
    return tuple(values)


def build_convnet(layout: Layout, input_shape: tuple[int, ...], num_outputs: int = 10,
                  filters: tuple[int, ...] | None = None, kernel_size: tuple[int, ...] | None = None,
                  padding: str | None = None, dropout: float | None = None, batch_norm: bool = False,
                  log_softmax: bool = False) -> ConvNet2d:
    """``layout`` for ``input_shape`` (C, H, W); None options take the layout's (= the recipe's) defaults."""
    if len(input_shape) != 3:
        raise ConfigError(f"{layout.name} needs images (C, H, W), got input shape {tuple(input_shape)}")
    n_conv = len(layout.pools)
    filters = _per_layer(layout.name, tuple(filters or layout.filters), n_conv, "filter count",
                         ",".join(map(str, layout.filters)))
    kernels = _per_layer(layout.name, tuple(kernel_size or layout.kernel_size), n_conv, "kernel size",
                         ",".join(map(str, layout.kernel_size)))
    padding = padding or layout.padding
    if padding not in ("same", "valid"):
        raise ConfigError(f"padding must be same or valid, got {padding!r}")
    p = layout.dropout if dropout is None else dropout

    features: list[tuple[str, nn.Module]] = []
    channels = input_shape[0]
    for i, (f, k, pool) in enumerate(zip(filters, kernels, layout.pools), start=1):
        features.append((f"conv{i}", nn.Conv2d(channels, f, k, padding=k // 2 if padding == "same" else 0)))
        if batch_norm:
            features.append((f"bn{i}", nn.BatchNorm2d(f)))
        if p > 0 and i == n_conv:
            features.append((f"drop{i}", nn.Dropout2d(p)))
        relu = (f"relu{i}", nn.ReLU())
        pooling = [(f"pool{i}", nn.MaxPool2d(2))] if pool else []
        features.extend([*pooling, relu] if layout.pool_before_relu else [relu, *pooling])
        channels = f
    c, h, w = trace(features, tuple(input_shape), model=layout.name)[-1][1]  # (C, H, W) before the flatten

    head: list[tuple[str, nn.Module]] = []
    width = c * h * w
    if p > 0 and not layout.hidden:
        head.append(("drop", nn.Dropout(p)))
    for j, hidden in enumerate(layout.hidden, start=1):
        head += [(f"fc{j}", nn.Linear(width, hidden)), (f"fc{j}_relu", nn.ReLU())]
        if p > 0:
            head.append((f"fc{j}_drop", nn.Dropout(p)))
        width = hidden
    head.append(("out", nn.Linear(width, num_outputs)))
    return ConvNet2d(layout.name, tuple(input_shape), features, head, log_softmax=log_softmax)


def factory(name: str):
    """The ``MODELS`` entry of one layout: (input_shape, num_outputs, filters, kernel_size, **options)."""
    layout = LAYOUTS[name]

    def make(input_shape, num_outputs, filters=(), kernel_size=(), *, padding=None, dropout=None,
             batch_norm=False, log_softmax=False, **_):
        return build_convnet(layout, input_shape, num_outputs, filters or None, kernel_size or None,
                             padding=padding, dropout=dropout, batch_norm=bool(batch_norm), log_softmax=log_softmax)

    make.__doc__ = layout.doc
    make.__name__ = name
    return make
