"""A model's layers as a table: name, type, output shape and parameter count (``model_summary.txt``)."""
from __future__ import annotations

import torch
from torch import nn


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
    lines.append(f"total parameters: {sum(p.numel() for p in model.parameters()):,}")
    return "\n".join(lines) + "\n"
