"""The training loop's own SGD gives torch.optim.SGD's numbers bit for bit, without importing torch._dynamo."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers import REPO
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.data.bundle import DataBundle, Split
from pipeline.data.load import load_bundle
from pipeline.models.registry import build_model
from pipeline.train import loop
from pipeline.train.sgd import SGD

from test_train import STALL_WITH_3_ESCAPE_WITH_4


def _fit(cfg: TrainConfig, bundle: DataBundle, num_outputs: int) -> tuple[loop.History, list[torch.Tensor]]:
    model = build_model(cfg.model, bundle.input_shape, num_outputs, cfg.filters, cfg.kernel_size, seed=cfg.seed,
                        padding=cfg.padding, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
    history = loop.fit(model, bundle, cfg, torch.device("cpu"))
    return history, [p.detach().clone() for p in model.parameters()]


def _same_with_torch_sgd(monkeypatch, cfg: TrainConfig, bundle: DataBundle, num_outputs: int) -> loop.History:
    ours, ours_w = _fit(cfg, bundle, num_outputs)
    with monkeypatch.context() as m:
        m.setattr(loop, "SGD", torch.optim.SGD)  # the same call, torch's optimizer
        theirs, theirs_w = _fit(cfg, bundle, num_outputs)
    assert ours == theirs  # every epoch's losses and accuracies, exactly
    assert all(torch.equal(a, b) for a, b in zip(ours_w, theirs_w))
    return ours


@pytest.mark.parametrize("seed", STALL_WITH_3_ESCAPE_WITH_4)
def test_the_labs_seeds_are_bit_identical(monkeypatch, seed):
    cfg = resolve(TrainConfig(filters=(3,), seed=seed, print_every=0))
    history = _same_with_torch_sgd(monkeypatch, cfg, load_bundle(cfg), 1)
    assert history.train_loss[-1] > 0.25  # the documented stall, still there


def test_minibatch_2d_training_with_dropout_and_batch_norm_is_bit_identical(monkeypatch):
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 256, (96, 1, 12, 12), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)
    bundle = DataBundle("images", "multiclass", Split(X[:64], y[:64]), Split(X[64:], y[64:]), ("a", "b", "c"), {})
    cfg = resolve(TrainConfig(recipe="mnist-small", model="lenet", filters=(4, 6), kernel_size=(3, 3),
                              padding="same", dropout=0.25, batch_norm=True, batch_size=16, epochs=3,
                              momentum=0.9, weight_decay=1e-3, log_interval=0, seed=1, device="cpu"))
    _same_with_torch_sgd(monkeypatch, cfg, bundle, 3)


def test_sgd_zero_grad_and_plain_steps_match_torch():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    v = torch.nn.Parameter(w.detach().clone())
    ours, theirs = SGD([w], lr=0.1), torch.optim.SGD([v], lr=0.1)
    for opt, p in ((ours, w), (theirs, v)):
        for _ in range(3):
            opt.zero_grad()
            (p ** 2).sum().backward()
            opt.step()
    assert torch.equal(w, v) and w.grad is not None
    ours.zero_grad()
    assert w.grad is None


def test_a_training_run_does_not_import_dynamo():
    code = ("import sys, torch; from pipeline.config.recipes import resolve; "
            "from pipeline.config.stages import TrainConfig; from pipeline.data.load import load_bundle; "
            "from pipeline.models.registry import build_model; from pipeline.train.loop import fit; "
            "cfg = resolve(TrainConfig(epochs=3, print_every=0)); "
            "fit(build_model(cfg.model, (1, 20), 1, cfg.filters, cfg.kernel_size, seed=0), load_bundle(cfg), cfg, "
            "torch.device('cpu')); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _torch_sgd_replay(initial: list[torch.Tensor], grads_per_step: list[list[torch.Tensor]], **options):
    """torch.optim.SGD on copies of ``initial``, fed the recorded gradients step by step; the final weights."""
    params = [torch.nn.Parameter(p.detach().clone()) for p in initial]
    opt = torch.optim.SGD(params, **options)
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in params]


def _multiseed_steps(engine: str, seeds: int, momentum: float, weight_decay: float):
    """Six epochs of ``multiseed.sgd_epochs`` on ``engine``: (initial [units, const], final [units, const],
    every epoch's gradients)."""
    from pipeline.capacity.kernel import WindowIndex
    from pipeline.capacity.multiseed import sgd_epochs, stack_initial
    from pipeline.data.synthetic import make_synthetic

    X, y = make_synthetic(40, 20, 0)
    units, const, batch = stack_initial([2, 3], 5, range(seeds))
    initial, recorded = [units.clone(), const.clone()], []
    sgd_epochs(units, const, WindowIndex.build(X, y, 5).to("cpu", units.dtype), batch, lr=0.05, momentum=momentum,
               weight_decay=weight_decay, epochs=6, on_epoch=lambda e, logits, gu, gc: recorded.append(
                   [gu.clone(), gc.clone()]), engine=engine)
    assert len(recorded) == 6
    return initial, [units, const], recorded


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 1e-3), (0.0, 1e-3), (0.5, 0.0), (0.0, 0.0)])
def test_multiseed_steps_are_torch_sgd_bit_for_bit(momentum, weight_decay):
    initial, ours, recorded = _multiseed_steps("torch", 4, momentum, weight_decay)
    theirs = _torch_sgd_replay(initial, recorded, lr=0.05, momentum=momentum, weight_decay=weight_decay)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 1e-3), (0.0, 1e-3), (0.5, 0.0)])
def test_the_compiled_engines_step_is_the_formula_without_fused_multiply_adds(momentum, weight_decay):
    """capacity/fused_loops.py's step: d = g + wd·p, buf = m·buf + d (d at the first step), p -= lr·buf, each
    product and sum rounded on its own (torch's vectorised add with alpha fuses them, so it differs in the last
    bit): replayed here with one torch op per operation, to the bit."""
    params, ours, recorded = _multiseed_steps("fused", 20, momentum, weight_decay)
    lr, m, wd = (torch.tensor(v, dtype=torch.float32) for v in (0.05, momentum, weight_decay))
    bufs = [None, None]
    for grads in recorded:
        for i, (p, g) in enumerate(zip(params, grads)):
            d = torch.add(g, torch.mul(wd, p))
            bufs[i] = d if bufs[i] is None else torch.add(torch.mul(m, bufs[i]), d)
            params[i] = torch.sub(p, torch.mul(lr, bufs[i]))
    assert torch.equal(ours[0], params[0]) and torch.equal(ours[1], params[1])


@pytest.mark.parametrize("frozen", [False, True])
def test_pattern_steps_are_torch_sgd_bit_for_bit(monkeypatch, frozen):
    from pipeline.capacity import pattern
    from pipeline.train import sgd

    recorded, initial = [], []

    def spy(params, grads, bufs, **options):
        if not initial:
            initial.extend(p.clone() for p in params)
        recorded.append([g.clone() for g in grads])
        sgd.sgd_update(params, grads, bufs, **options)

    monkeypatch.setattr(pattern, "sgd_update", spy)
    X, y = pattern.test_pairs(20, seed=99)
    r = pattern.train_pattern(2, [0, 1, 2], X, y, lr=0.1, momentum=0.5, steps=15, frozen=frozen)
    theirs = _torch_sgd_replay(initial, recorded, lr=0.1, momentum=0.5)
    ours = [r.linear, r.bias] if frozen else [r.conv, r.linear, r.bias]
    assert len(recorded) == 15 and all(torch.equal(a, b) for a, b in zip(ours, theirs))
