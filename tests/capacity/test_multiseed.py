"""The batched multi-seed trainer against torch: initial weights, gradients, whole trainings."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.capacity import kernel
from pipeline.capacity import multiseed as ms
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.data.load import synthetic_bundle
from pipeline.data.synthetic import make_synthetic
from pipeline.errors import ConfigError
from pipeline.models.detector import Detector1d
from pipeline.models.registry import build_model
from pipeline.train.loop import fit

from helpers import REPO


@pytest.fixture(scope="module")
def data():
    return make_synthetic(75, 20, 0)


def model_with(units: torch.Tensor, const: torch.Tensor, filters: int, k: int) -> Detector1d:
    """A torch Detector1d holding the first model of a (k + 2, U) unit matrix."""
    m = Detector1d(filters, k).to(units.dtype)
    with torch.no_grad():
        m.conv.weight.copy_(units[:k, :filters].T.unsqueeze(1))
        m.conv.bias.copy_(units[k, :filters])
        m.linear.weight.copy_(units[k + 1, :filters].unsqueeze(0))
        m.linear.bias.copy_(const[:1])
    return m


def ours(units, const, X, y, filters, k):
    """(logits per row, mean loss, unit gradient, const gradient) from multiseed's passes, for one model."""
    index = kernel.WindowIndex.build(X, y, k).to("cpu", units.dtype)
    batch = kernel.Batch(k=k, model_of_unit=torch.zeros(filters, dtype=torch.long), models=1)
    fwd = kernel.forward(units, const, index, batch)
    grad = torch.empty_like(units)
    gc = kernel.backward(units, index, batch, fwd, grad)
    return fwd[0], kernel.mean_bce(fwd[0], index)[0], grad, gc[0], index


def torch_grads(m: Detector1d, X, y):
    m.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(m(X), y)
    loss.backward()
    k = m.conv.kernel_size[0]
    g = torch.cat([m.conv.weight.grad[:, 0].T, m.conv.bias.grad[None], m.linear.weight.grad]).reshape(k + 2, -1)
    return loss.detach(), g, m.linear.bias.grad[0]


# --------------------------------------------------------------------------- initial weights
@pytest.mark.parametrize("filters,k", [(1, 3), (3, 5), (8, 7), (5, 201)])
def test_initial_weights_are_build_models_bit_for_bit(filters, k):
    """Drawn without torch, as torch draws them: also past mt19937's first 624 words (k = 201), and for seeds
    of 32 bits and more (torch seeds its generator with the low 32 bits)."""
    seeds = [0, 5, 123, 7, 2**31 + 3, 2**32 - 1, 2**32 + 5, 10**12 + 1]
    torch.manual_seed(999)
    before = torch.rand(3)
    torch.manual_seed(999)
    units, const = map(torch.from_numpy, ms.initial_weights(filters, k, seeds))
    assert torch.equal(torch.rand(3), before), "the global RNG must be left as it was"
    for i, s in enumerate(seeds):
        m = build_model("detector1d", (1, 20), 1, (filters,), (k,), seed=s)
        cols = slice(i * filters, (i + 1) * filters)
        assert torch.equal(units[:k, cols], m.conv.weight.detach()[:, 0].T)
        assert torch.equal(units[k, cols], m.conv.bias.detach())
        assert torch.equal(units[k + 1, cols], m.linear.weight.detach()[0])
        assert torch.equal(const[i : i + 1], m.linear.bias.detach())


def test_a_torch_that_initialises_otherwise_fails_loudly(monkeypatch, tmp_path):
    from pipeline.capacity import initial

    stamp = tmp_path / "checked"
    monkeypatch.setattr(initial, "_stamp", lambda: stamp)
    uniform = initial._uniform
    initial.check_torch.cache_clear()
    monkeypatch.setattr(initial, "_uniform", lambda raw, bound: np.zeros(raw.shape, np.float32))
    with pytest.raises(RuntimeError, match="initialises Detector1d unlike the draws"):
        ms.initial_weights(2, 3, [0])
    assert not stamp.exists(), "a failed check must not be remembered"
    monkeypatch.setattr(initial, "_uniform", uniform)
    initial.check_torch.cache_clear()
    assert ms.initial_weights(2, 3, [0])[0].shape == (5, 2)
    assert stamp.exists(), "a passed check is remembered for the next process"
    initial.check_torch.cache_clear()  # a next process: the stamp spares it the comparison (and torch's import)
    monkeypatch.setattr(initial, "_compare", lambda: pytest.fail("compared again although the stamp says passed"))
    initial.check_torch()
    initial.check_torch.cache_clear()


def test_a_stamp_that_cannot_be_written_or_read_is_said_in_one_line(monkeypatch, tmp_path, capsys):
    import importlib.util

    from pipeline.capacity import initial

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(initial, "_stamp", lambda: blocker / "sub" / "checked")  # its folder cannot be made
    initial.check_torch.cache_clear()
    initial.check_torch()  # the check itself passes
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Note: could not remember the check in") and "every process" in err
    monkeypatch.undo()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no torch/version.py to key the stamp by
    assert initial._stamp() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot tell which torch is installed" in err
    initial.check_torch.cache_clear()


def test_the_fused_engine_refuses_weights_off_the_cpu():
    units, const, batch = ms.stack_initial([2], 3, [0])
    index = kernel.WindowIndex.build(*make_synthetic(10, 8, 0), 3).to("cpu")
    with pytest.raises(ConfigError, match="fused engine trains on the CPU; the weights are on meta"):
        ms.sgd_epochs(units.to("meta"), const.to("meta"), index, batch, lr=0.05, momentum=0.9, weight_decay=0,
                      epochs=1, engine="fused")


def test_the_stamp_is_named_by_the_installed_torch(monkeypatch, tmp_path):
    """Another torch (its version file rewritten by an install or upgrade) is checked again."""
    import importlib.util

    from pipeline.capacity import initial

    real = initial._stamp()
    assert real is not None and real.parent == REPO / "pipeline" / "capacity" / "__pycache__"
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "version.py").write_text("__version__ = '9.9.9'\n")
    spec = importlib.util.spec_from_file_location("torch", fake / "__init__.py")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    other = initial._stamp()
    (fake / "version.py").write_text("__version__ = '9.9.10'\n")
    assert len({real, other, initial._stamp()}) == 3


# --------------------------------------------------------------------------- one step
@pytest.mark.parametrize("kind", ["synthetic", "dense"])
@pytest.mark.parametrize("filters,k", [(3, 5), (2, 3)])
def test_forward_and_gradient_match_autograd(kind, filters, k, data):
    """Windows and row groups are an exact rewrite, also for data where every window differs."""
    if kind == "synthetic":
        X, y = data
    else:
        g = torch.Generator().manual_seed(1)
        X = torch.randn(12, 1, 9, generator=g)
        y = (torch.rand(12, 1, generator=g) > 0.5).float()
    units, const = (torch.from_numpy(a).double() for a in ms.initial_weights(filters, k, [3]))
    X, y = X.double(), y.double()
    logits, loss, grad, gc, index = ours(units, const, X, y, filters, k)
    m = model_with(units, const, filters, k)
    t_loss, t_grad, t_gc = torch_grads(m, X, y)
    assert index.groups <= X.shape[0]
    if kind == "synthetic":
        assert index.windows.shape[0] - 1 < X.shape[0] * X.shape[2] / 10  # the compression that pays
    assert float(loss) == pytest.approx(float(t_loss), abs=1e-12)
    torch.testing.assert_close(grad, t_grad, atol=1e-12, rtol=0)
    assert float(gc) == pytest.approx(float(t_gc), abs=1e-12)


def test_exact_tie_goes_to_the_first_position_like_torch():
    """Two different windows with the same pre-activation: torch routes the gradient to the first."""
    X = torch.zeros(2, 1, 8)
    X[0, 0, 2:4] = 0.5  # windows [0,.5,.5] then [.5,.5,0]: equal under the kernel [1, 1, 1]
    X[1, 0, 5] = 1.0
    y = torch.tensor([[1.0], [0.0]])
    units = torch.tensor([[1.0], [1.0], [1.0], [0.25], [0.7]])  # taps, bias, linear weight: (k + 2, 1)
    const = torch.tensor([0.1])
    _, _, grad, _, _ = ours(units, const, X, y, 1, 3)
    _, t_grad, _ = torch_grads(model_with(units, const, 1, 3), X, y)
    index = kernel.WindowIndex.build(X, y, 3).to("cpu", torch.float32)
    z = units[:3, 0] @ index.windows[:-1].T + units[3, 0]
    assert int((z == z.max()).sum()) > 1, "the data must produce an exact tie"
    torch.testing.assert_close(grad, t_grad, atol=1e-7, rtol=0)
    # the tie matters: routing to the other window would mirror the tap gradient
    assert not torch.allclose(t_grad[:3, 0], t_grad[:3, 0].flip(0))


# --------------------------------------------------------------------------- whole trainings
SEEDS = list(range(8))


@pytest.mark.parametrize("filters,k", [(3, 5), (8, 7)])
def test_matches_sequential_pipeline_training(filters, k):
    """The issue's equivalence check: seeds 0-7 against `pipeline train --seed s`'s own loop (fit)."""
    bundle = synthetic_bundle(75, 20, 0, 1)
    r = ms.train_seeds(filters, k, SEEDS, bundle.train.X, bundle.train.y, history_every=10)
    for i, s in enumerate(SEEDS):
        cfg = resolve(TrainConfig(filters=(filters,), kernel_size=(k,), seed=s, print_every=0))
        model = build_model("detector1d", bundle.input_shape, 1, cfg.filters, cfg.kernel_size, seed=s)
        history = fit(model, bundle, cfg, torch.device("cpu"), echo=lambda _: None)
        assert abs(r.final_loss[i] - history.train_loss[-1]) < 1e-4, f"seed {s}"
        assert r.train_accuracy[i] == history.train_accuracy[-1], f"seed {s}"
        curve = np.asarray(history.train_loss)[r.history_epochs - 1]
        np.testing.assert_allclose(r.history[i], curve, atol=1e-4, rtol=0, err_msg=f"seed {s}")
        torch.testing.assert_close(torch.from_numpy(r.conv_weight[i]), model.conv.weight.detach(), atol=1e-3, rtol=0)


def test_float64_matches_torch_where_float32_rounding_diverges(data):
    """Seed 36 (F=3, k=5) reaches a point where float32 rounding of either side decides the path;
    in float64 both sides agree to 1e-12 over all 500 epochs, so the algorithm itself is exact."""
    X, y = data
    r = ms.train_seeds(3, 5, [36], X, y, history_every=1, dtype=torch.float64)
    m = build_model("detector1d", (1, 20), 1, (3,), (5,), seed=36).double()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    losses = []
    for _ in range(500):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(X.double()), y.double())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    np.testing.assert_allclose(r.history[0], losses, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.from_numpy(r.conv_weight[0]), m.conv.weight.detach(), atol=1e-10, rtol=0)


def test_configs_in_one_call_agree_with_separate_calls(data):
    X, y = data
    configs = [(2, 5), (3, 5), (1, 3)]
    together = ms.train_configs(configs, range(6), X, y, epochs=150)
    for (f, k), r in zip(configs, together):
        alone = ms.train_seeds(f, k, range(6), X, y, epochs=150)
        assert (r.filters, r.kernel_size) == (f, k)
        np.testing.assert_allclose(r.final_loss, alone.final_loss, atol=1e-5, rtol=0)
        np.testing.assert_allclose(r.conv_weight, alone.conv_weight, atol=1e-4, rtol=0)


def test_result_shapes_history_and_test_accuracy(data):
    X, y = data
    Xt, yt = make_synthetic(300, 20, 2)
    r = ms.train_seeds(4, 5, [10, 11, 12], X, y, epochs=120, history_every=50, X_test=Xt, y_test=yt)
    assert r.seeds == (10, 11, 12)
    assert list(r.history_epochs) == [1, 50, 100, 120]
    assert r.history.shape == (3, 4) and r.conv_weight.shape == (3, 4, 1, 5)
    assert r.linear_weight.shape == (3, 1, 4) and r.linear_bias.shape == (3, 1)
    assert r.history[:, -1] == pytest.approx(r.final_loss)
    for i in range(3):
        m = Detector1d(4, 5)
        m.load_state_dict(r.state_dict(i))
        with torch.no_grad():
            acc = int(((m(Xt) > 0).float() == yt).sum()) / len(yt)
        assert r.test_accuracy[i] == pytest.approx(acc, abs=1e-12)


def test_bad_arguments(data):
    X, y = data
    with pytest.raises(ConfigError, match="odd"):
        ms.train_seeds(3, 4, [0], X, y)
    with pytest.raises(ConfigError, match="seed"):
        ms.train_seeds(3, 5, [], X, y)
    with pytest.raises(ConfigError, match="y_test"):
        ms.train_seeds(3, 5, [0], X, y, X_test=X)


def test_benchmark_quick_prints_the_table():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_multiseed.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "ms/run" in out.stdout and "speed-up" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.strip().startswith("multiseed")]
    assert rows, out.stdout
