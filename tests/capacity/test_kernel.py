"""The 1D kernel's gradient routing, bit for bit against the other way to write it.

``kernel.backward`` routes each (group, unit)'s gradient at the max with a (G, M, U) mask:
``eq`` against the max, the first slot kept on an exact tie, ``index_add_`` of all slots into
per-window rows. The other formulation takes the first maximal slot from ``torch.max(zg, dim=1)``
(documented: on ties the index of the first maximal value) and scatters one value per (group,
unit). Per (window, unit) both add the same nonzero terms in group order (the mask adds exact
zeros besides, which change no sum that starts at +0), so whole trainings agree with
``torch.equal``. The argmax way is not the kernel's because on CPU it is slower (measured on the
default grid: 1.4-2.3x; ``torch.max`` with indices over dim 1 and a per-column ``scatter_add_``
are scalar loops, ``amax``/``eq``/``index_add_`` of whole rows are vectorised).
"""
from __future__ import annotations

import pytest
import torch

from pipeline.capacity import kernel
from pipeline.capacity import multiseed as ms
from pipeline.data.synthetic import make_synthetic
from pipeline.errors import ConfigError


def argmax_forward(units, const, index, batch, ws=None):
    """The forward with the first maximal slot from ``torch.max``; returns it in place of ``ws``."""
    k = batch.k
    z = torch.cat([torch.addmm(units[k], index.windows[:-1], units[:k]), torch.full_like(units[:1], float("-inf"))])
    zg = z[index.ids].view(index.groups, index.per_group, -1)  # (G, M, U)
    zmax, first = torch.max(zg, dim=1)
    h = zmax.clamp_min(0)
    logits = torch.zeros(index.groups, batch.models, dtype=units.dtype)
    logits.index_add_(1, batch.model_of_unit, h * units[k + 1]).add_(const)
    return logits, zg, zmax, h, first


def argmax_backward(units, index, batch, fwd, grad_units):
    """The backward with one (G, U) scatter of the gradient at the max into its window's row."""
    k = batch.k
    logits, _, zmax, h, first = fwd
    dl = torch.sigmoid(logits).mul_(index.count).sub_(index.positives).div_(index.n)
    dl_units = dl.index_select(1, batch.model_of_unit)
    torch.sum(h * dl_units, dim=0, out=grad_units[k + 1])
    coef = (zmax > 0).to(units.dtype).mul_(units[k + 1]).mul_(dl_units)
    torch.sum(coef, dim=0, out=grad_units[k])
    window = index.ids.view(index.groups, -1).gather(1, first)  # (G, U) the first maximal slot's window
    per_window = torch.zeros_like(index.windows[:, :1].expand(-1, units.shape[1])).contiguous()
    per_window.scatter_add_(0, window, coef)
    torch.mm(index.windows.T, per_window, out=grad_units[:k])
    return dl.sum(dim=0)


def tied_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with equal windows at several positions and duplicated rows: exact ties under any kernel
    whose taps are equal (here: the zero taps of ``zero_taps``) or symmetric."""
    X = torch.zeros(12, 1, 16)
    for i in range(6):
        X[i, 0, 2 + i : 4 + i] = 0.5  # windows [0, .5, .5] then [.5, .5, 0]
        X[6 + i, 0, 1 + i] = X[6 + i, 0, 9] = 1.0  # the same bump twice
    y = (torch.arange(12) % 3 == 0).float().unsqueeze(1)
    return torch.cat([X, X[:4]]), torch.cat([y, y[:4]])  # duplicated rows


def zero_taps(units: torch.Tensor, k: int) -> torch.Tensor:
    """Taps of every other unit set to zero and biases positive: every window of a row ties there."""
    units = units.clone()
    units[:k, ::2] = 0
    units[k, ::2] = units[k, ::2].abs() + 0.1
    return units


def duplicated(units: torch.Tensor) -> torch.Tensor:
    """Every unit's first half copied onto the second half (identical columns)."""
    units = units.clone()
    half = units.shape[1] // 2
    units[:, half : 2 * half] = units[:, :half]
    return units


def train(units, const, index, batch, epochs):
    """``sgd_epochs`` on the torch engine (this kernel's; the CPU's default is the compiled one, checked in
    test_fused.py); (final units, const, every epoch's loss)."""
    losses = []
    units, const = units.clone(), const.clone()
    ms.sgd_epochs(units, const, index, batch, lr=0.05, momentum=0.9, weight_decay=1e-3, epochs=epochs,
                  on_epoch=lambda _, logits, *rest: losses.append(kernel.mean_bce(logits, index)), engine="torch")
    return units, const, torch.stack(losses)


def ties(units, const, index, batch) -> int:
    """(group, unit) pairs whose max is attained in more than one slot."""
    _, zg, zmax, _, _ = kernel.forward(units, const, index, batch)
    return int(((zg == zmax.unsqueeze(1)).sum(dim=1) > 1).sum())


CASES = [("synthetic", None), ("tied", None), ("synthetic", zero_taps), ("tied", zero_taps),
         ("synthetic", duplicated)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("filters", [1, 3, 8])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("data,change", CASES)
def test_training_is_bit_for_bit_the_argmax_formulation(data, change, k, filters, dtype, monkeypatch):
    X, y = make_synthetic(75, 20, 0) if data == "synthetic" else tied_data()
    index = kernel.WindowIndex.build(X, y, k).to("cpu", dtype)
    units, const, batch = ms.stack_initial([filters], k, range(6), dtype=dtype)
    if change is not None:
        units = change(units, k) if change is zero_taps else change(units)
    if change is zero_taps:
        assert ties(units, const, index, batch) >= index.groups, "the data must produce exact ties"
    ours = train(units, const, index, batch, epochs=40)
    monkeypatch.setattr(kernel, "forward", argmax_forward)
    monkeypatch.setattr(kernel, "backward", argmax_backward)
    theirs = train(units, const, index, batch, epochs=40)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert not torch.equal(ours[0], units), "the training must move the weights"


def test_torch_max_returns_the_first_maximal_slot():
    """The reference's premise (torch's documented tie rule), on a (G, M, U) as wide as the kernel's."""
    slots = torch.tensor([[1.0, 0.0, 5.0, float("-inf")],  # group 0: (G, M=4, U=4) before widening
                          [3.0, -0.0, 5.0, 2.0],
                          [3.0, 0.0, 5.0, 2.0],
                          [2.0, -1.0, 5.0, float("-inf")]]).unsqueeze(0)
    zg = torch.cat([slots, slots.flip(1)]).repeat(1, 1, 100)  # (2, 4, 400)
    values, first = torch.max(zg, dim=1)
    assert first[0, :4].tolist() == [1, 0, 0, 1] and first[1, :4].tolist() == [1, 1, 0, 1]
    assert torch.equal(first, first[:, :4].repeat(1, 100))
    assert torch.equal(values, zg.amax(dim=1))
    assert torch.equal(torch.signbit(values), torch.signbit(zg.gather(1, first.unsqueeze(1))[:, 0]))


# --------------------------------------------------------------------------- the compiled engine (fused.py)
def run(units, const, index, batch, epochs, engine, **kw):
    """A copy of (units, const) trained ``epochs`` on ``engine``: (units, const, every looked-at epoch's loss,
    the momentum buffers)."""
    losses = []
    units, const = units.clone(), const.clone()
    kw.setdefault("on_epoch", lambda _, logits, *rest: losses.append(kernel.mean_bce(logits, index)))
    bufs = ms.sgd_epochs(units, const, index, batch, lr=0.05, momentum=0.9, weight_decay=1e-3, epochs=epochs,
                         engine=engine, **kw)
    return units, const, torch.stack(losses) if losses else None, bufs


@pytest.mark.parametrize("filters", [1, 3])
@pytest.mark.parametrize("k", [3, 7])
@pytest.mark.parametrize("data,change", [("synthetic", None), ("tied", zero_taps), ("synthetic", duplicated)])
def test_fused_follows_the_torch_engine_to_float64_rounding(data, change, k, filters):
    """Every epoch's loss and the final weights, through exact ties too (a tie routed to another window
    would move the tap gradient by O(1), not 1e-12)."""
    X, y = make_synthetic(75, 20, 0) if data == "synthetic" else tied_data()
    index = kernel.WindowIndex.build(X, y, k).to("cpu", torch.float64)
    units, const, batch = ms.stack_initial([filters], k, range(6), dtype=torch.float64)
    if change is not None:
        units = change(units, k) if change is zero_taps else change(units)
    if change is zero_taps:
        assert ties(units, const, index, batch) >= index.groups, "the data must produce exact ties"
    fused, theirs = run(units, const, index, batch, 40, "fused"), run(units, const, index, batch, 40, "torch")
    for a, b in zip(fused[:3], theirs[:3]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    torch.testing.assert_close(fused[3][0], theirs[3][0], atol=1e-12, rtol=0)  # the momentum buffers too
    assert not torch.equal(fused[0], units), "the training must move the weights"


def test_fused_gives_a_seed_the_same_bits_however_it_is_batched():
    """A seed alone, among 40 seeds (three tiles), and beside another filter count in one call: equal bits,
    so the capacity stage, the sweep and diagnose's replays agree exactly whatever they batch."""
    X, y = make_synthetic(75, 20, 0)
    index = kernel.WindowIndex.build(X, y, 5).to("cpu", torch.float32)
    u, c, b = ms.stack_initial([3], 5, [7])
    alone = run(u, c, index, b, 60, "fused")
    u, c, b = ms.stack_initial([3], 5, range(40))
    many = run(u, c, index, b, 60, "fused")
    u, c, b = ms.stack_initial([2, 3], 5, range(40))
    mixed = run(u, c, index, b, 60, "fused")
    seven = slice(7 * 3, 8 * 3)  # seed 7's three units among the F=3 block
    assert torch.equal(many[0][:, seven], alone[0]) and torch.equal(many[1][7:8], alone[1])
    assert torch.equal(mixed[0][:, 40 * 2 + 7 * 3 : 40 * 2 + 8 * 3], alone[0])
    assert torch.equal(mixed[1][40 + 7 : 40 + 8], alone[1])
    assert torch.equal(many[2][:, 7], alone[2][:, 0])


def test_fused_looking_inside_threads_and_continuing_change_no_bit():
    """Hooks at some epochs or at every epoch, one thread or two, and 30 + 20 epochs continued from the
    momentum buffers: the same weights as 50 epochs straight. A hook sees its epoch's weights before the step."""
    X, y = make_synthetic(75, 20, 0)
    index = kernel.WindowIndex.build(X, y, 7).to("cpu", torch.float32)
    units, const, batch = ms.stack_initial([4], 7, range(40))
    straight = run(units, const, index, batch, 50, "fused", on_epoch=None)
    seen, calls = {}, []

    def look(epoch, logits, grad_units, grad_const):
        seen[epoch] = (watched[0].clone(), logits.clone())
        calls.append(epoch)

    watched = [units.clone(), const.clone()]
    ms.sgd_epochs(*watched, index, batch, lr=0.05, momentum=0.9, weight_decay=1e-3, epochs=50, engine="fused",
                  on_epoch=look, look_at=[30, 1, 50, 30, 70])  # unordered, a repeat, one past the end
    assert calls == [1, 30, 50] and torch.equal(watched[0], straight[0])
    assert torch.equal(seen[1][0], units), "epoch 1's hook sees the initial weights"
    assert torch.equal(seen[30][0], run(units, const, index, batch, 29, "fused", on_epoch=None)[0])
    torch.testing.assert_close(seen[30][1], kernel.forward(seen[30][0], run(units, const, index, batch, 29, "fused",
                               on_epoch=None)[1], index, batch)[0], atol=1e-5, rtol=0)
    assert torch.equal(run(units, const, index, batch, 50, "fused")[0], straight[0])  # a hook at every epoch
    first = run(units, const, index, batch, 30, "fused", on_epoch=None)
    rest = run(first[0], first[1], index, batch, 20, "fused", on_epoch=None, bufs=first[3])
    assert torch.equal(rest[0], straight[0]) and torch.equal(rest[1], straight[1])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(run(units, const, index, batch, 50, "fused", on_epoch=None)[0], straight[0])
    finally:
        torch.set_num_threads(threads)


def test_engines_are_named_and_the_cpu_default_is_fused(monkeypatch):
    X, y = make_synthetic(75, 20, 0)
    index = kernel.WindowIndex.build(X, y, 3).to("cpu", torch.float32)
    units, const, batch = ms.stack_initial([2], 3, range(3))
    with pytest.raises(ConfigError, match="engine 'numba'"):
        ms.sgd_epochs(units, const, index, batch, lr=0.05, momentum=0.9, weight_decay=0, epochs=1, engine="numba")
    assert ms.engine_of("cpu") == "fused" and ms.engine_of("cuda") == "torch"
    assert torch.equal(run(units, const, index, batch, 5, "auto")[0], run(units, const, index, batch, 5, "fused")[0])
    assert run(units, const, index, batch, 5, "fused", on_epoch=None)[3] != []
    no_momentum = units.clone()
    assert ms.sgd_epochs(no_momentum, const.clone(), index, batch, lr=0.05, momentum=0, weight_decay=0, epochs=3,
                         engine="fused") == []
    assert not torch.equal(no_momentum, units)
