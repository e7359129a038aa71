"""The stacked net's faster layouts against torch's plain computations, seed by seed.

``StackedNet`` computes its head as W·hᵀ, its log-softmax over a middle axis, its shared
scoring batches as grouped convolutions, and hands gradients back in the conv stack's memory
format; each must give what each seed's own ``nn.Module`` and torch's functions give.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.capacity.images.stacked import StackedNet, _GradIn, log_softmax
from pipeline.capacity.images.trainer import hits, per_seed_loss
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.data.load import load_bundle
from pipeline.train.stage import make_model

QUIET = dict(print_every=0, log_interval=0, image_every=0, device="cpu")


@pytest.fixture(scope="module")
def digits():
    return load_bundle(resolve(TrainConfig(dataset="digits", **QUIET)))


def test_log_softmax_loss_and_hits_are_torchs():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(3, 7, 10, generator=g) * 4  # (S, B, classes)
    y = torch.randint(0, 10, (3, 7), generator=g)
    torch.testing.assert_close(log_softmax(out), F.log_softmax(out, dim=-1), rtol=0, atol=1e-6)
    strided = out.transpose(1, 2).contiguous().transpose(1, 2)  # as StackedNet's head leaves it
    for loss, ref in (("ce", F.cross_entropy), ("nll", F.nll_loss)):
        x = out if loss == "ce" else F.log_softmax(out, dim=-1)
        expected = torch.stack([ref(x[s], y[s]) for s in range(3)])  # each seed's mean over its rows
        torch.testing.assert_close(per_seed_loss(loss, x, y), expected, rtol=1e-6, atol=1e-6)
    counted = (np.argmax(out.numpy(), axis=-1) == y.numpy()).sum(axis=1)
    assert hits(strided, y).tolist() == hits(out, y).tolist() == counted.tolist()


def test_gradient_is_handed_back_in_the_conv_stacks_layout():
    h = torch.randn(2, 6, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(6, 2, 4, 4).permute(1, 0, 2, 3)  # neither contiguous nor channels-last
    (grad,) = torch.autograd.grad(_GradIn.apply(h, torch.channels_last), h, g)
    assert grad.is_contiguous(memory_format=torch.channels_last) and torch.equal(grad, g)


@pytest.mark.parametrize("channels_last", [True, False])
def test_stacked_gradients_and_shared_batches_are_each_models(channels_last, digits):
    """LeNet (two convs, a three-layer head): per seed, the outputs on a shared batch and the
    gradients of every weight on its own rows are those of the seed's own model."""
    cfg = resolve(TrainConfig(dataset="digits", model="lenet", filters=(3, 4), kernel_size=(3,), padding="same",
                              **QUIET))
    models = [make_model(dataclasses.replace(cfg, seed=s), digits) for s in (0, 1, 2)]
    net = StackedNet(models, seeds=(0, 1, 2), channels_last=channels_last)
    x = digits.input_transform()(digits.train.X[:24])  # (8 rows per seed, ordered (row, seed))
    y = digits.train.y[:24].view(8, 3).T  # (S, B)
    out = net(x.view(8, -1, *x.shape[2:]))  # (S, B, classes)
    per_seed_loss("ce", out, y).sum().backward()
    for i, m in enumerate(models):
        F.cross_entropy(m(x.view(8, 3, *x.shape[1:])[:, i]), y[i]).backward()
        for name, p in m.named_parameters():
            torch.testing.assert_close(net.params[name].grad[i], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    net.eval()
    shared = x[:10]  # one batch for every seed, C channels
    with torch.no_grad():
        for i, m in enumerate(models):
            torch.testing.assert_close(net(shared)[i], m.eval()(shared), rtol=1e-4, atol=1e-5)
