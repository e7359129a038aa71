"""The compiled loops of ``fused.py`` (numba): one configuration's SGD epochs, a tile of seeds at a
time, and the mean loss. ``fused.py`` says what they compute and holds the code that calls them."""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_DISABLE_INTEL_SVML", "1")  # vectorised exp/log (SVML) may round unlike the scalar
# ones that a tile's last lanes use: a seed's bits would then depend on its place in the tile

import numba  # noqa: E402 - after the setting above, which numba reads on import
import numpy as np  # noqa: E402

numba.config.THREADING_LAYER = "workqueue"  # numba's own pool: OpenMP's threads spin after each call, on the
# core that logs the child runs between the grid's configurations (cells measured up to 2x slower to log)
TILE = 16  # seeds per tile: one or two vector registers wide; z, maxima and gradients of a tile fit in L1


@numba.njit(cache=True, nogil=True)
def step(theta, bufs, const, bufc, grad, gconst, first, lr, momentum, wd):
    """One momentum step of (theta, const) with (grad, gconst), in place: ``train.sgd.sgd_update``'s order."""
    for r in range(theta.shape[0]):
        for f in range(theta.shape[1]):
            for t in range(theta.shape[2]):
                d = grad[r, f, t] + wd * theta[r, f, t]
                b = d if first else momentum * bufs[r, f, t] + d
                bufs[r, f, t] = b
                theta[r, f, t] -= lr * b
    for t in range(const.shape[0]):
        d = gconst[t] + wd * const[t]
        b = d if first else momentum * bufc[t] + d
        bufc[t] = b
        const[t] -= lr * b


@numba.njit(cache=True, nogil=True)
def _forward(th, c, windows, ids, lengths, count, positives, n, zero, one, z, zmax, arg, logit, dl):
    """One tile's forward pass: pre-activations z (P, F, T), group maxima and their first window (G, F, T),
    logits and d loss / d logit (G, T)."""
    P, k = windows.shape
    F, T = th.shape[1], th.shape[2]
    for p in range(P):
        z[p] = 0.0
        for j in range(k):
            x = windows[p, j]
            if x != 0.0:
                for f in range(F):
                    for t in range(T):
                        z[p, f, t] += x * th[j, f, t]
        for f in range(F):
            for t in range(T):
                z[p, f, t] += th[k, f, t]
    for g in range(ids.shape[0]):
        zmax[g] = z[ids[g, 0]]
        arg[g] = 0
        for m in range(1, lengths[g]):
            p = ids[g, m]
            for f in range(F):
                for t in range(T):
                    v = z[p, f, t]
                    better = v > zmax[g, f, t]
                    zmax[g, f, t] = v if better else zmax[g, f, t]
                    arg[g, f, t] = m if better else arg[g, f, t]
        logit[g] = 0.0
        for f in range(F):
            for t in range(T):
                zm = zmax[g, f, t]
                logit[g, t] += (zm if zm > zero else zero) * th[k + 1, f, t]
        for t in range(T):
            logit[g, t] += c[t]
            dl[g, t] = (one / (one + np.exp(-logit[g, t])) * count[g] - positives[g]) / n


@numba.njit(cache=True, nogil=True)
def _backward(th, windows, ids, lengths, zero, zmax, arg, dl, coef, pw, grad, gconst):
    """One tile's gradients (before weight decay): grad (k + 2, F, T), gconst (T,)."""
    P, k = windows.shape
    F, T = th.shape[1], th.shape[2]
    grad[:] = 0.0
    pw[:] = 0.0
    gconst[:] = 0.0
    for g in range(ids.shape[0]):
        for f in range(F):
            for t in range(T):
                zm = zmax[g, f, t]
                on = zm > zero
                grad[k + 1, f, t] += (zm if on else zero) * dl[g, t]
                cf = th[k + 1, f, t] * dl[g, t] if on else zero
                coef[f, t] = cf
                grad[k, f, t] += cf
        for m in range(lengths[g]):
            p = ids[g, m]
            for f in range(F):
                for t in range(T):
                    pw[p, f, t] += coef[f, t] if arg[g, f, t] == m else zero
        for t in range(T):
            gconst[t] += dl[g, t]
    for j in range(k):
        for p in range(P):
            x = windows[p, j]
            if x != 0.0:
                for f in range(F):
                    for t in range(T):
                        grad[j, f, t] += x * pw[p, f, t]


@numba.njit(cache=True, nogil=True, parallel=True)
def run_epochs(theta, bufs, const, bufc, first, windows, ids, lengths, count, positives, n, lr, momentum, wd,
               epochs, step_last, logits_out, grad_out, gconst_out):
    """``epochs`` forward and backward passes of every seed of one configuration, each followed by a step
    except the last where ``step_last`` is False (a caller that looks inside then steps with ``step``).

    theta, bufs (k + 2, F, S): taps, conv bias and linear weight of filter f of seed s; const, bufc (S,);
    ``first``: no momentum buffer yet. windows (P, k), ids (G, M) with ``lengths`` (G,) valid windows per
    group, count and positives (G,): a ``windows.WindowIndex``. The last pass's logits (G, S), gradients
    (k + 2, F, S) and (S,) are left in the ``_out`` arrays. Tiles of ``TILE`` seeds run in parallel.
    """
    P, k = windows.shape
    F, S = theta.shape[1], theta.shape[2]
    G = ids.shape[0]
    dtype = theta.dtype
    zero, one = np.zeros(1, dtype)[0], np.ones(1, dtype)[0]  # literals would promote float32 to float64
    for tile in numba.prange((S + TILE - 1) // TILE):
        t0 = tile * TILE
        T = min(TILE, S - t0)
        th, bu = theta[:, :, t0 : t0 + T].copy(), bufs[:, :, t0 : t0 + T].copy()
        c, bc = const[t0 : t0 + T].copy(), bufc[t0 : t0 + T].copy()
        z, pw = np.empty((P, F, T), dtype), np.empty((P, F, T), dtype)
        zmax, arg = np.empty((G, F, T), dtype), np.empty((G, F, T), np.int32)
        logit, dl, coef = np.empty((G, T), dtype), np.empty((G, T), dtype), np.empty((F, T), dtype)
        grad, gconst = np.empty((k + 2, F, T), dtype), np.empty(T, dtype)
        started = not first
        for e in range(epochs):
            _forward(th, c, windows, ids, lengths, count, positives, n, zero, one, z, zmax, arg, logit, dl)
            _backward(th, windows, ids, lengths, zero, zmax, arg, dl, coef, pw, grad, gconst)
            if e < epochs - 1 or step_last:
                step(th, bu, c, bc, grad, gconst, not started, lr, momentum, wd)
                started = True
        theta[:, :, t0 : t0 + T] = th
        bufs[:, :, t0 : t0 + T] = bu
        const[t0 : t0 + T] = c
        bufc[t0 : t0 + T] = bc
        logits_out[:, t0 : t0 + T] = logit
        grad_out[:, :, t0 : t0 + T] = grad
        gconst_out[t0 : t0 + T] = gconst


@numba.njit(cache=True, nogil=True)
def mean_bce_loop(logits, count, positives, n, out):
    """out (S,) = sum_g count softplus(logit) - positives logit, over N: torch's softplus (threshold 20),
    summed over the groups in order, per seed."""
    out[:] = 0.0
    for g in range(logits.shape[0]):
        for s in range(logits.shape[1]):
            x = logits[g, s]
            out[s] += count[g] * (x if x > 20.0 else np.log1p(np.exp(x))) - positives[g] * x
    for s in range(logits.shape[1]):
        out[s] /= n


@numba.njit(cache=True, nogil=True)
def mt19937_draws(seeds, out):
    """out[i]: the first ``out.shape[1]`` 32-bit outputs of the Mersenne Twister seeded with ``seeds[i]``, as
    ``torch.manual_seed(seeds[i])`` seeds torch's CPU generator (mt19937's init_genrand; seeds below 2**32)."""
    mt = np.empty(624, np.uint32)
    for i in range(seeds.shape[0]):
        mt[0] = np.uint32(seeds[i] & 0xFFFFFFFF)
        for j in range(1, 624):
            prev = np.uint64(mt[j - 1])
            mt[j] = np.uint32((np.uint64(1812433253) * (prev ^ (prev >> np.uint64(30))) + np.uint64(j))
                              & np.uint64(0xFFFFFFFF))
        at = 624
        for t in range(out.shape[1]):
            if at == 624:  # the twist: the next 624 words
                for j in range(624):
                    y = (mt[j] & np.uint32(0x80000000)) | (mt[(j + 1) % 624] & np.uint32(0x7FFFFFFF))
                    v = mt[(j + 397) % 624] ^ (y >> np.uint32(1))
                    mt[j] = v ^ np.uint32(0x9908B0DF) if y & np.uint32(1) else v
                at = 0
            y = mt[at]
            at += 1
            y ^= y >> np.uint32(11)
            y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
            y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
            out[i, t] = y ^ (y >> np.uint32(18))
