"""The memory check before training: the same byte count as running the model on the meta device,
without loading torch's meta kernels, and without touching the caller's random state."""
from __future__ import annotations

import pytest
import torch

from pipeline.models.registry import build_model, count_parameters, memory_needed

MODELS = [
    ("detector1d", (1, 20), 1, (4,), (5,), {}),
    ("smallconv", (1, 8, 8), 10, (8,), (3,), {}),
    ("lenet", (1, 28, 28), 10, (6, 16), (5, 5), {"padding": "same"}),
    ("conv3", (3, 32, 32), 10, (16, 32, 64), (3, 3, 3), {"batch_norm": True}),
    ("dropoutnet", (1, 28, 28), 10, (32, 64), (5, 5), {"dropout": 0.5, "batch_norm": True}),
]


def on_meta(name, shape, outputs, filters, kernels, batch, **options) -> int:
    """The reference: the whole batch through a meta-device copy."""
    with torch.device("meta"):
        model = build_model(name, shape, outputs, filters, kernels, **options)
        sizes: list[int] = []
        for m in model.modules():
            if not list(m.children()):
                m.register_forward_hook(lambda m, i, o: sizes.append(o.numel()))
        model(torch.empty((batch, *shape)))
    return 4 * (4 * count_parameters(model) + 3 * sum(sizes))


@pytest.mark.parametrize("name,shape,outputs,filters,kernels,options", MODELS, ids=[m[0] for m in MODELS])
def test_memory_needed_matches_the_meta_device(name, shape, outputs, filters, kernels, options):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    need = memory_needed(name, shape, outputs, filters, kernels, 64, **options)
    assert torch.equal(torch.get_rng_state(), state)  # training still starts from the seed it was given
    assert need == on_meta(name, shape, outputs, filters, kernels, 64, **options)


def test_a_model_whose_weights_alone_do_not_fit_is_not_built(monkeypatch):
    from pipeline.config import checks

    monkeypatch.setattr(checks, "available_memory", lambda: 1000)
    with torch.device("meta"):
        params = count_parameters(build_model("detector1d", (1, 20), 1, (10_000_000,), (5,)))
    # the weights alone are over: returned from the meta count, before a 280 MB CPU copy is made
    assert memory_needed("detector1d", (1, 20), 1, (10_000_000,), (5,), 75) == 16 * params
