"""The course lab's 1D detector: does the pattern 0, +1, 0 appear in a sequence?"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import ConfigError


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
