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
    """``sgd_epochs`` as the capacity stage runs it; (final units, const, every epoch's loss)."""
    losses = []
    units, const = units.clone(), const.clone()
    ms.sgd_epochs(units, const, index, batch, lr=0.05, momentum=0.9, weight_decay=1e-3, epochs=epochs,
                  on_epoch=lambda _, logits, *rest: losses.append(kernel.mean_bce(logits, index)))
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
    monkeypatch.setattr(ms, "forward", argmax_forward)
    monkeypatch.setattr(ms, "backward", argmax_backward)
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
