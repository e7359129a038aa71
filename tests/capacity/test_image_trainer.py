"""The batched multi-seed trainer for 2D nets against `pipeline train`'s own loop, seed by seed.

Reference: ``train.loop.fit`` on ``make_model(seed=s)``, exactly what ``pipeline train --seed s``
runs. In float64 every seed's trajectory must agree to ~1e-12 (only the summation order of the
grouped convolution differs). In float32 the two round differently, and on these runs
(SGD at lr 0.05 with momentum 0.9) a difference of 1e-7 can grow over a few epochs, so the
float32 check is short (20 steps) and its tolerance 1e-4.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.capacity import study
from pipeline.capacity.images.stacked import StackedNet, mask_generator
from pipeline.capacity.images.trainer import group_size, interleave, stacked_net, train_seeds
from pipeline.config.image_study import STRATEGIES
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.data.bundle import Split
from pipeline.data.load import load_bundle
from pipeline.errors import ConfigError
from pipeline.models.convnets import LAYOUTS
from pipeline.train.loop import fit
from pipeline.train.stage import make_model

QUIET = dict(print_every=0, log_interval=0, image_every=0, device="cpu")
SMALLCONV = dict(model="smallconv", filters=(4,), kernel_size=(3,))  # digits recipe: batch 32, SGD 0.05, momentum 0.9
LENET_BN = dict(filters=(4, 8), kernel_size=(3,), batch_norm=True)  # the digits recipe's LeNet, with batch norm


@pytest.fixture(scope="module")
def digits():
    cfg = resolve(TrainConfig(dataset="digits", **QUIET))
    return load_bundle(cfg)


@pytest.fixture
def float64(digits):
    """torch in float64, and the digits as float64: tells rounding apart from a real difference."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield dataclasses.replace(digits, train=Split(digits.train.X.double(), digits.train.y),
                                  val=Split(digits.val.X.double(), digits.val.y),
                                  test=Split(digits.test.X.double(), digits.test.y))
    finally:
        torch.set_default_dtype(old)


def alone(cfg: TrainConfig, bundle, seed: int):
    """(final state dict, History) of `pipeline train --seed seed`'s loop."""
    c = dataclasses.replace(cfg, seed=seed)
    model = make_model(c, bundle)
    history = fit(model, bundle, c, torch.device("cpu"), echo=lambda line: None)
    return model.state_dict(), history


def worst_differences(cfg: TrainConfig, bundle, seeds, strategy: str = "auto") -> tuple[float, float]:
    """(largest weight difference relative to the tensor's scale, largest per-epoch metric difference)."""
    batched = train_seeds(cfg, bundle, seeds, torch.device("cpu"), strategy=strategy)
    assert batched.strategy.startswith(strategy if strategy != "auto" else ("grouped", "vmap", "loop"))
    weights = metrics = 0.0
    for i, s in enumerate(seeds):
        state, history = alone(cfg, bundle, s)
        mine = batched.model(i).state_dict()
        assert mine.keys() == state.keys()
        for k, v in state.items():
            scale = max(float(v.double().abs().max()), 1e-12)
            weights = max(weights, float((mine[k].double() - v.double()).abs().max()) / scale)
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "last_batch_loss"):
            assert batched.history[k].shape == (len(seeds), cfg.epochs)
            metrics = max(metrics, float(np.abs(np.asarray(getattr(history, k)) - batched.history[k][i]).max()))
    return weights, metrics


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("net", [SMALLCONV, LENET_BN], ids=["smallconv", "lenet-batchnorm"])
def test_four_seeds_batched_end_with_the_weights_of_each_seed_alone(net, strategy, digits, float64):
    """Acceptance: 4 seeds at once against each alone; weights and per-epoch losses within 1e-9 (float64)."""
    cfg = resolve(TrainConfig(dataset="digits", epochs=2, max_batches=12, **net, **QUIET))
    weights, metrics = worst_differences(cfg, float64, [0, 1, 2, 3], strategy)
    assert weights < 1e-9 and metrics < 1e-10, (weights, metrics)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("net", [SMALLCONV, LENET_BN], ids=["smallconv", "lenet-batchnorm"])
def test_four_seeds_batched_agree_in_float32(net, strategy, digits):
    cfg = resolve(TrainConfig(dataset="digits", epochs=2, max_batches=10, **net, **QUIET))
    weights, metrics = worst_differences(cfg, digits, [0, 1, 2, 3], strategy)
    assert weights < 1e-4 and metrics < 1e-4, (weights, metrics)


SPLIT = "loop, contiguous, threads split between seeds"


def test_the_loop_with_threads_split_between_seeds_ends_each_seed_as_alone(float64):
    """Two threads (the tests run on one): the loop's seeds run side by side, one torch thread each, and each
    ends with `pipeline train --seed s`'s weights and losses (float64); torch's thread count comes back."""
    cfg = resolve(TrainConfig(dataset="digits", epochs=2, max_batches=12, **LENET_BN, **QUIET))
    with study.torch_threads(2):
        assert train_seeds(cfg, float64, [0, 1, 2], strategy="loop").strategy == SPLIT
        assert torch.get_num_threads() == 2
        weights, metrics = worst_differences(cfg, float64, [0, 1, 2], "loop")
    assert weights < 1e-9 and metrics < 1e-10, (weights, metrics)


def test_the_split_loop_ends_on_the_same_bits_whichever_thread_runs_a_seed(digits):
    """float32: each seed's arithmetic is its own thread's, so two runs of three seeds on two cores agree bit for
    bit (the CPU's rule: a rerun or a resume ends where the first run did), and with the plain loop on one thread."""
    cfg = resolve(TrainConfig(dataset="digits", epochs=2, max_batches=10, **SMALLCONV, **QUIET))
    with study.torch_threads(2):
        first, again = (train_seeds(cfg, digits, [0, 1, 2], seeds_at_once=1) for _ in range(2))
    with study.torch_threads(1):  # the plain loop, one seed after another on one thread
        plain = train_seeds(cfg, digits, [0, 1, 2], seeds_at_once=1)
    assert first.strategy == again.strategy == SPLIT and plain.strategy == "loop, contiguous"
    for other in (again, plain):
        for i in range(3):
            for name, w in first.model(i).state_dict().items():
                assert torch.equal(w, other.model(i).state_dict()[name]), (i, name)
        np.testing.assert_array_equal(first.history["train_loss"], other.history["train_loss"])


def test_a_failing_seed_stops_the_others_and_restores_the_threads(digits, monkeypatch):
    """One seed's error is raised; the seeds beside it stop at their next minibatch instead of ending their epoch."""
    from pipeline.capacity.images import trainer

    cfg = resolve(TrainConfig(dataset="digits", epochs=3, max_batches=40, **SMALLCONV, **QUIET))
    steps, step = [], trainer._Group.step

    def failing(self, xb, yb):
        steps.append(self)
        if len(steps) == 5:
            raise RuntimeError("seed failed")
        return step(self, xb, yb)

    monkeypatch.setattr(trainer._Group, "step", failing)
    with study.torch_threads(2):
        with pytest.raises(RuntimeError, match="seed failed"):
            train_seeds(cfg, digits, [0, 1, 2], strategy="loop")
        assert torch.get_num_threads() == 2  # the split's one thread per seed undone
    assert len(steps) < 5 + 3 * 10, len(steps)  # 3 x 40 x 3 steps had the others run on


def test_a_torch_that_keeps_several_threads_in_a_seeds_thread_is_refused(digits, monkeypatch):
    """Were torch's thread count not settable per thread, the split's bits would depend on what runs beside a seed."""
    from pipeline.capacity.images.side_by_side import ThreadsNotSplit

    cfg = resolve(TrainConfig(dataset="digits", epochs=1, max_batches=2, **SMALLCONV, **QUIET))
    with study.torch_threads(2):
        monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
        with pytest.raises(ThreadsNotSplit, match="torch kept 2 threads in a seed's thread"):
            train_seeds(cfg, digits, [0, 1, 2], strategy="loop")
        monkeypatch.undo()


@pytest.mark.parametrize("optimizer,lr,momentum", [("rmsprop", 1e-3, 0.5), ("adam", 1e-3, None)])
def test_rmsprop_and_adam_step_like_torch_optim(optimizer, lr, momentum, float64):
    cfg = resolve(TrainConfig(dataset="digits", epochs=2, max_batches=6, optimizer=optimizer, lr=lr,
                              momentum=momentum, weight_decay=1e-4, **SMALLCONV, **QUIET))
    weights, metrics = worst_differences(cfg, float64, [0, 5])
    assert weights < 1e-9 and metrics < 1e-10, (weights, metrics)


def test_groups_of_seeds_give_the_same_seeds(float64):
    cfg = resolve(TrainConfig(dataset="digits", epochs=2, max_batches=5, **SMALLCONV, **QUIET))
    whole = train_seeds(cfg, float64, range(5))
    seen = []
    parts = train_seeds(cfg, float64, range(5), seeds_at_once=2, on_epoch=lambda e, v: seen.append((e, v)),
                        strategy="grouped")  # auto might time the loop faster: groups of one
    assert [net.size for net in parts.nets] == [2, 2, 1]
    for k in whole.history:
        np.testing.assert_allclose(parts.history[k], whole.history[k], rtol=0, atol=1e-12)
    assert [e for e, _ in seen] == [1, 2] and seen[-1][1]["val_accuracy"].shape == (5,)
    assert group_size(cfg, float64, torch.device("cpu")) >= 16  # 8x8 digits: all seeds of a cell at once


def test_a_group_holds_two_seeds_even_where_their_activations_pass_the_bytes():
    """mnist-rmsprop's net on 28x28, batch 64: 5.4 MiB a seed's largest activation, so GROUP_BYTES alone would run
    one seed at a time; two at once ran faster (trainer.MIN_GROUP), and auto on the CPU takes them grouped."""
    from pipeline.capacity.images.trainer import GROUP_BYTES, MIN_GROUP
    from pipeline.data.bundle import DataBundle

    g = torch.Generator().manual_seed(0)
    images = Split(torch.randint(0, 256, (64, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(64) % 10)
    bundle = DataBundle("mnist", "multiclass", images, images, tuple(map(str, range(10))))
    cfg = resolve(TrainConfig(recipe="mnist-rmsprop", epochs=1, max_batches=1, **QUIET))
    per_seed = 4 * cfg.batch_size * 32 * 26 * 26  # the first conv's output
    assert per_seed > GROUP_BYTES["cpu"] // 2 and MIN_GROUP == 2
    assert group_size(cfg, bundle, torch.device("cpu")) == 2
    result = train_seeds(cfg, bundle, [0, 1, 2])
    assert [net.size for net in result.nets] == [2, 1] and result.strategy.startswith("grouped, channels-last")


# --------------------------------------------------------------------------- dropout
def test_dropout_masks_are_each_seeds_own_and_reproducible(digits):
    """A seed gives the same run whichever seeds share its batch; two seeds draw different masks."""
    cfg = resolve(TrainConfig(dataset="digits", model="dropoutnet", filters=(4, 8), kernel_size=(3,),
                              padding="same", dropout=0.5, loss="nll", epochs=2, max_batches=8, **QUIET))
    first = train_seeds(cfg, digits, [3])
    again = train_seeds(cfg, digits, [3])
    among = train_seeds(cfg, digits, [1, 3, 7])
    for k, v in first.model(0).state_dict().items():
        assert torch.equal(v, again.model(0).state_dict()[k]), k  # the same call twice: bit for bit
        torch.testing.assert_close(among.model(1).state_dict()[k], v, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(among.history["train_loss"][1], first.history["train_loss"][0], rtol=1e-5)

    # two seeds with identical weights and inputs differ only by their masks
    model = make_model(dataclasses.replace(cfg, seed=0), digits)
    net = StackedNet([model, model], seeds=[0, 1])
    x = digits.input_transform()(digits.train.X[:16])  # one batch for both seeds
    out = net(x)
    assert not torch.allclose(out[0], out[1])
    twins = StackedNet([model, model], seeds=[5, 5])(x)
    assert torch.equal(twins[0], twins[1])
    a, b = (torch.rand(1000, generator=mask_generator(s, torch.device("cpu"))) for s in (0, 1))
    assert not torch.equal(a, b)
    net.eval()
    evaluated = net(x)
    torch.testing.assert_close(evaluated[0], model.eval()(x))  # no dropout in eval mode


# --------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_stacked_forward_is_each_models_forward(name, digits):
    """Every lab's layout with batch norm, in train and eval mode (dropout off), seed by seed."""
    cfg = resolve(TrainConfig(dataset="digits", model=name, filters=(3,) * len(LAYOUTS[name].pools),
                              kernel_size=(3,), padding="same", batch_norm=True, dropout=0.0, **QUIET))
    models = [make_model(dataclasses.replace(cfg, seed=s), digits) for s in (0, 1, 2)]
    net = StackedNet(models, seeds=(0, 1, 2))
    x = digits.input_transform()(digits.train.X[:24])  # (8 rows per seed) as (B, S·C, H, W): row r, seed s
    grouped = x.view(8, 3, *x.shape[1:]).flatten(1, 2)
    for mode in (True, False):
        net.train(mode)
        out = net(grouped)
        for i, m in enumerate(models):
            m.train(mode)
            torch.testing.assert_close(out[i], m(x.view(8, 3, *x.shape[1:])[:, i]), rtol=1e-4, atol=1e-5)
    for i, m in enumerate(models):  # the batch-norm statistics moved per seed, as each model's own
        torch.testing.assert_close(net.model(i).state_dict(), m.state_dict(), rtol=1e-5, atol=1e-6)
    assert net.num_parameters() == sum(p.numel() for p in models[0].parameters())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_stacked_seeds_start_with_the_weights_of_make_model(name, digits):
    """Re-drawn on one template (``reinitialised``), every seed's weights are make_model's, bit for bit."""
    cfg = resolve(TrainConfig(dataset="digits", model=name, filters=(3,) * len(LAYOUTS[name].pools),
                              kernel_size=(3,), padding="same", batch_norm=True, **QUIET))
    state = torch.get_rng_state()
    net = stacked_net(cfg, digits, [4, 0, 7], torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)  # torch's global random state untouched
    for i, seed in enumerate([4, 0, 7]):
        ref = make_model(dataclasses.replace(cfg, seed=seed), digits).state_dict()
        mine = net.state_dict(i)
        assert mine.keys() == ref.keys() and all(torch.equal(mine[k], v) for k, v in ref.items()), seed


def test_interleave_gives_every_seed_its_own_minibatches():
    orders = torch.stack([torch.randperm(10, generator=torch.Generator().manual_seed(s)) for s in range(3)])
    index = interleave(orders, 4)  # minibatches of 4, 4 and 2 rows per seed
    sizes = [4, 4, 2]
    start = 0
    for b, size in enumerate(sizes):
        rows = index[start:start + 3 * size].view(size, 3)  # (row, seed)
        for s in range(3):
            assert rows[:, s].tolist() == orders[s, 4 * b:4 * b + size].tolist()
        start += 3 * size


def test_bad_input(digits):
    with pytest.raises(ConfigError, match="at least one seed"):
        train_seeds(resolve(TrainConfig(dataset="digits", **QUIET)), digits, [])
    with pytest.raises(ConfigError, match="2D ConvNets"):
        StackedNet([make_model(resolve(TrainConfig(**QUIET)), load_bundle(resolve(TrainConfig(**QUIET))))], [0])


def test_benchmark_quick_prints_the_table():
    import re
    import subprocess
    import sys

    from helpers import REPO

    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_image_multiseed.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    ratios = re.findall(r"batched is ([\d.]+)x the loop", out.stdout)  # digits, then the five image recipes' nets
    assert "speed-up" in out.stdout and len(ratios) == 6, out.stdout
    assert set(re.findall(r"x  (\w+), ", out.stdout)) <= {"grouped", "vmap", "loop"}, out.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_on_cuda_the_seeds_train_as_on_the_cpu(digits):
    cfg = resolve(TrainConfig(dataset="digits", epochs=1, max_batches=10, **SMALLCONV, **QUIET))
    cpu = train_seeds(cfg, digits, [0, 1, 2, 3], torch.device("cpu"))
    gpu = train_seeds(cfg, digits, [0, 1, 2, 3], torch.device("cuda"))
    assert gpu.nets[0].device.type == "cuda"
    np.testing.assert_allclose(gpu.history["train_loss"], cpu.history["train_loss"], rtol=1e-3)
    dropout = dataclasses.replace(cfg, dropout=0.5)  # each seed's mask stream on the GPU
    first, again = (train_seeds(dropout, digits, [0, 1], torch.device("cuda")) for _ in range(2))
    np.testing.assert_allclose(first.history["train_loss"], again.history["train_loss"], rtol=1e-4)  # cuDNN sums
