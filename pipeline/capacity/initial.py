"""The 1D detector's initial weights for many seeds at once, drawn as ``build_model(seed=s)`` draws them."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from pipeline.capacity.windows import Batch

if TYPE_CHECKING:
    import torch

GAIN = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))  # torch.nn.init.calculate_gain("leaky_relu", sqrt(5)): the
# kaiming_uniform_ of nn.Conv1d's and nn.Linear's weights


def initial_weights(filters: int, kernel_size: int, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Initial (unit parameters (k + 2, S·F), linear biases (S,)) in float32, exactly as ``build_model(seed=s)``.

    ``Detector1d``'s constructor seeds torch's CPU generator (a Mersenne Twister) with s and draws, in this order,
    ``Conv1d``'s weight (F·k values, kaiming uniform: bound 1/sqrt(k)) and bias (F, 1/sqrt(k)), then ``Linear``'s
    weight and bias (F and 1, 1/sqrt(F)), each value ``uniform_(-bound, bound)``. The same draws come from
    ``fused_loops.mt19937_draws`` for all seeds at once and are scaled as torch scales them (``_uniform``):
    0.5 ms for 200 seeds, without torch (a stage's thread that trains while another logs would wait for the
    interpreter lock at each torch call, and the capacity stage on the CPU does not load torch at all).

    A test checks every weight bit for bit, and ``check_torch`` checks one model against the installed torch, so
    that a torch that initialises otherwise fails loudly: once per installed torch (a stamp file beside numba's
    cached machine code, keyed by torch's version file), else in every process.
    """
    check_torch()
    return _draws(filters, kernel_size, seeds)


def stack_arrays(filters: Sequence[int], k: int, seeds: Sequence[int],
                 dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray, Batch]:
    """The initial weights of every (F, seed) of ``filters`` x ``seeds`` as one batch, config-major:
    units (k + 2, U), linear biases (len(filters)·S,) and the layout (model m = i·S + seed index)."""
    S = len(seeds)
    parts = [initial_weights(f, k, seeds) for f in filters]
    units = np.concatenate([u for u, _ in parts], axis=1).astype(dtype)  # (k + 2, U)
    const = np.concatenate([c for _, c in parts]).astype(dtype)  # (models,)
    owner = np.concatenate([np.repeat(np.arange(S), f) + i * S for i, f in enumerate(filters)])
    return units, const, Batch(k=k, model_of_unit=owner, models=len(filters) * S)


def stack_initial(filters: Sequence[int], k: int, seeds: Sequence[int], device: Any = "cpu",
                  dtype: Any = None) -> tuple[torch.Tensor, torch.Tensor, Batch]:
    """``stack_arrays`` as torch tensors on ``device`` (``dtype``: float32 when None)."""
    import torch

    units, const, batch = stack_arrays(filters, k, seeds)
    dtype = dtype or torch.float32
    return torch.from_numpy(units).to(device, dtype), torch.from_numpy(const).to(device, dtype), batch.to(device)


def _draws(filters: int, kernel_size: int, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``initial_weights`` without the check."""
    from pipeline.capacity.fused_loops import mt19937_draws

    S, F, k = len(seeds), filters, kernel_size
    raw = np.empty((S, F * k + 2 * F + 1), np.uint32)
    mt19937_draws(np.array([int(s) & 0xFFFFFFFF for s in seeds], np.int64), raw)
    conv = _uniform(raw[:, :F * k], math.sqrt(3.0) * (GAIN / math.sqrt(k))).reshape(S, F, k)
    bias = _uniform(raw[:, F * k:F * k + F], 1 / math.sqrt(k))
    linear = _uniform(raw[:, F * k + F:F * k + 2 * F], math.sqrt(3.0) * (GAIN / math.sqrt(F)))
    const = _uniform(raw[:, -1], 1 / math.sqrt(F))
    taps = conv.transpose(2, 0, 1).reshape(k, S * F)  # (k, S·F), unit = s·F + f
    return np.ascontiguousarray(np.concatenate([taps, bias.reshape(1, S * F), linear.reshape(1, S * F)])), const


def _uniform(raw: np.ndarray, bound: float) -> np.ndarray:
    """float32 ``uniform_(-bound, bound)`` from torch's 32-bit draws, as ATen's CPU kernel computes it: from and to
    in float32, x = (draw & (2**24 - 1)) / 2**24 in float64, then x * (to - from) + from, rounded to float32."""
    lo, hi = np.float32(-bound), np.float32(bound)
    x = (raw & np.uint32((1 << 24) - 1)).astype(np.float64) * 2.0 ** -24
    return (x * np.float64(hi - lo) + np.float64(lo)).astype(np.float32)


@functools.cache
def check_torch() -> None:
    """``initial_weights`` of one seed equal ``build_model``'s under the installed torch, or a RuntimeError that
    says so: checked in this process unless a stamp says this torch (and this code) passed it before."""
    stamp = _stamp()
    if stamp is not None and stamp.exists():
        return
    _compare()
    if stamp is None:
        return
    try:
        stamp.parent.mkdir(exist_ok=True)
        stamp.touch()
    except OSError as err:
        _note(f"could not remember the check in {stamp} ({err})")


def _stamp() -> Path | None:
    """The file that says the installed torch passed ``_compare``: named by a hash of torch's version file (which an
    install or upgrade rewrites; read without importing torch) and of the code that both sides' draws depend on;
    None, said in one line, where torch's version file cannot be read."""
    spec = importlib.util.find_spec("torch")
    version = Path(spec.origin).with_name("version.py") if spec and spec.origin else None
    ours = [Path(__file__), Path(__file__).with_name("fused_loops.py"),
            Path(__file__).parents[1] / "models" / "detector.py"]
    try:
        if version is None:
            raise FileNotFoundError("torch has no version.py")
        key = hashlib.sha256(b"".join(str(f).encode() + f.read_bytes() for f in [version, *ours])).hexdigest()[:16]
    except OSError as err:
        _note(f"cannot tell which torch is installed ({err})")
        return None
    return Path(__file__).with_name("__pycache__") / f"initial_weights.torch-{key}.checked"


def _note(what: str) -> None:
    print(f"Note: {what}; torch's initialisation of Detector1d is checked again in every process "
          "(torch's import: about 2 CPU-s)", file=sys.stderr)


def _compare() -> None:
    import torch

    from pipeline.models.registry import build_model

    with torch.random.fork_rng(devices=[]), torch.no_grad():  # the global generator is left as it was
        model = build_model("detector1d", (1, 3), 1, (2,), (3,), seed=7)
        expected = torch.cat([model.conv.weight[:, 0].T, model.conv.bias[None], model.linear.weight])
    units, const = _draws(2, 3, [7])
    if not (torch.equal(torch.from_numpy(units), expected) and
            torch.equal(torch.from_numpy(const), model.linear.bias.detach())):
        raise RuntimeError(f"torch {torch.__version__} initialises Detector1d unlike the draws of "
                           "capacity.initial.initial_weights: they would not start where `pipeline train` does")
