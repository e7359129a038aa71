"""Conv arithmetic against real layers: the helper must agree with nn.Conv2d / nn.MaxPool2d."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models.conv_arith import layer_shape, out_size, trace


def test_out_size_matches_conv2d_over_many_shapes():
    checked = 0
    for size, k, stride, pad, dil in itertools.product((5, 7, 8, 13, 28, 32), (1, 2, 3, 5, 7), (1, 2, 3),
                                                       (0, 1, 2, 3), (1, 2)):
        if pad > k // 2 * dil or dil * (k - 1) + 1 > size + 2 * pad:
            continue  # PyTorch refuses these; the helper reports them as < 1 (see below)
        conv = nn.Conv2d(2, 3, k, stride=stride, padding=pad, dilation=dil)
        real = conv(torch.zeros(1, 2, size, size + 1)).shape
        assert layer_shape(conv, (2, size, size + 1)) == tuple(real[1:]), (size, k, stride, pad, dil)
        assert out_size(size, k, stride, pad, dil) == real[2]
        checked += 1
    assert checked > 300


def test_out_size_matches_pools_and_same_padding():
    for size, k, stride, pad in itertools.product((4, 5, 9, 14, 28), (2, 3), (1, 2, 3), (0, 1)):
        if pad > k // 2:
            continue
        for pool in (nn.MaxPool2d(k, stride, pad), nn.AvgPool2d(k, stride, pad)):
            real = pool(torch.zeros(1, 1, size, size)).shape
            assert layer_shape(pool, (1, size, size)) == tuple(real[1:])
    conv = nn.Conv2d(1, 4, 5, padding="same")
    assert layer_shape(conv, (1, 9, 11)) == tuple(conv(torch.zeros(1, 1, 9, 11)).shape[1:])
    assert layer_shape(nn.ReLU(), (3, 7, 7)) == (3, 7, 7)


def test_trace_names_the_layer_whose_kernel_does_not_fit():
    layers = [("conv1", nn.Conv2d(1, 6, 5)), ("pool1", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(6, 16, 5))]
    shapes = trace(layers, (1, 28, 28))
    assert shapes == [("conv1", (6, 24, 24)), ("pool1", (6, 12, 12)), ("conv2", (16, 8, 8))]
    with pytest.raises(ConfigError, match=r"lenet: kernel 5x5 of conv2 is too large for its 2x2 input feature map "
                                          r"\(input 1x8x8"):
        trace(layers, (1, 8, 8), model="lenet")
    with pytest.raises(ConfigError, match="pooling window 2x2 of pool1 is too large for its 1x1"):
        trace(layers[:2], (1, 5, 5))
    with pytest.raises(ConfigError, match="conv1 expects 1 input channels, got 3"):
        trace(layers, (3, 28, 28))
