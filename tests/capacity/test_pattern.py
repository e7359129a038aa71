"""The published task (rom1mouret/exploration): its data streams, the batched trainer against the
published loop seed by seed, and stage capacity-pattern."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.capacity import pattern, replication
from pipeline.config.pattern import PatternCapacityConfig
from pipeline.errors import ConfigError


def published_round(filters: int, seed: int, frozen: bool, X_test, y_test, steps: int = 100):
    """One round as the published script runs it (NaiveCNN, torch.optim.SGD, BCEWithLogitsLoss), seeded."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    conv, linear = torch.nn.Conv1d(1, filters, 4, bias=False), torch.nn.Linear(filters, 1)
    if frozen:
        conv.requires_grad_(False)
    optimizer = torch.optim.SGD([*conv.parameters(), *linear.parameters()], lr=0.1, momentum=0.5)
    for _ in range(steps):
        torch.randn(2)
        negative = torch.rand(1, 1, 64) - 0.5
        positive = torch.rand(1, 1, 64) - 0.5
        i = rng.randint(0, 59)
        positive[0, 0, [i, i + 1, i + 3]] = 1
        logits = linear(conv(torch.cat([negative, positive])).max(dim=2)[0]).squeeze(1)
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([0.0, 1.0])).backward()
        optimizer.step()
    with torch.no_grad():
        logits = linear(conv(X_test[:, None]).max(dim=2)[0]).squeeze(1)
    return conv.weight.detach()[:, 0], linear.weight.detach()[0], ((logits > 0).float() == y_test).float().mean()


def test_streams_plant_the_pattern_and_leave_the_global_rng_alone():
    torch.manual_seed(5)
    before = torch.rand(2)
    torch.manual_seed(5)
    conv, lin, bias, pairs = pattern.initial_and_stream(3, seed=7, steps=20)
    assert torch.equal(torch.rand(2), before)
    assert conv.shape == (3, 4) and conv.abs().max() <= 0.5 and lin.abs().max() <= 1 / np.sqrt(3)
    negatives, positives = pairs[:, 0], pairs[:, 1]
    assert negatives.min() >= -0.5 and negatives.max() < 0.5
    for row in positives:
        ones = (row == 1).nonzero().flatten().tolist()
        assert len(ones) == 3 and ones[1] == ones[0] + 1 and ones[2] == ones[0] + 3 and ones[0] <= 59
    assert torch.equal(pattern.initial_and_stream(3, seed=7, steps=20)[3], pairs)
    assert not torch.equal(pattern.initial_and_stream(4, seed=7, steps=20)[3], pairs)  # the init moves the stream
    X, y = pattern.test_pairs(10, seed=1)
    assert X.shape == (20, 64) and y.tolist() == [0.0, 1.0] * 10


@pytest.mark.parametrize("filters,frozen", [(1, False), (3, False), (2, True)])
def test_batched_training_is_the_published_loop_seed_by_seed(filters, frozen):
    X_test, y_test = pattern.test_pairs(100, seed=99)
    seeds = [0, 1, 2, 3]
    r = pattern.train_pattern(filters, seeds, X_test, y_test, frozen=frozen)
    for i, s in enumerate(seeds):
        conv, lin, acc = published_round(filters, s, frozen, X_test, y_test)
        torch.testing.assert_close(r.conv[i], conv, atol=1e-5, rtol=0)
        torch.testing.assert_close(r.linear[i], lin, atol=1e-5, rtol=0)
        assert r.test_accuracy[i] == pytest.approx(float(acc))
    if frozen:
        assert torch.equal(r.conv, pattern.streams(filters, seeds, 1)[0])


# the published means (percent) read off rom1mouret/exploration's conv1_experiment.png, F = 1 and 2
PUBLISHED_F1_F2 = {"trained": (74.3, 87.5), "frozen": (68.5, 81.1)}


def test_capacity_pattern_is_a_capacity_run_tagged_with_its_task(client, tmp_path):
    csv = tmp_path / "seeds.csv"
    cfg = PatternCapacityConfig(filters=(1, 2), seeds=8, steps=40, test_pairs=50, success=0.7, table=str(csv))
    result = replication.run(cfg, echo=lambda line: None)
    run = client.get_run(result.run_id)
    assert run.data.tags["stage"] == "capacity" and run.data.tags["task"] == pattern.TASK
    assert {a.path for a in client.list_artifacts(result.run_id, "figures")} == {
        "figures/accuracy_vs_filters.png", "figures/p_success_heatmap.png", "figures/test_accuracy_histogram.png"}
    seeds = pd.read_csv(client.download_artifacts(result.run_id, "tables/seeds.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(csv), seeds)
    assert sorted(zip(seeds["filters"], seeds["variant"], seeds["seed"])) == sorted(
        (f, v, s) for f in (1, 2) for v in ("trained", "frozen") for s in range(8))
    X_test, y_test = pattern.test_pairs(cfg.test_pairs, cfg.test_seed)
    for f, variant, s in ((1, "trained", 0), (2, "frozen", 5)):  # seeds trained by the published loop itself
        acc = float(published_round(f, s, variant == "frozen", X_test, y_test, steps=cfg.steps)[2])
        at = seeds[(seeds["filters"] == f) & (seeds["variant"] == variant) & (seeds["seed"] == s)]
        assert at["test_accuracy"].item() == pytest.approx(acc)


def test_capacity_pattern_summary_is_the_t_and_wilson_intervals_of_its_seeds(client):
    from scipy.stats import binomtest, sem, t

    cfg = PatternCapacityConfig(filters=(1, 2), seeds=8, steps=40, test_pairs=50, success=0.7)
    lines: list[str] = []
    result = replication.run(cfg, echo=lines.append)
    seeds = pd.read_csv(client.download_artifacts(result.run_id, "tables/seeds.csv"))
    summary = pd.read_csv(client.download_artifacts(result.run_id, "tables/summary.csv"))
    metrics = client.get_run(result.run_id).data.metrics
    children = {(int(c.data.params["filters"]), c.data.params["variant"]): c.data.metrics
                for c in client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                            f"tags.mlflow.parentRunId = '{result.run_id}'")}
    assert list(zip(summary["variant"], summary["filters"])) == [("trained", 1), ("trained", 2), ("frozen", 1),
                                                                 ("frozen", 2)]
    for (f, variant), part in seeds.groupby(["filters", "variant"]):
        acc = part["test_accuracy"].to_numpy()
        lo, hi = np.clip(t.interval(0.95, len(acc) - 1, loc=acc.mean(), scale=sem(acc)), 0, 1)
        k = int((acc >= cfg.success).sum())
        wilson = binomtest(k, len(acc)).proportion_ci(method="wilson")
        published = PUBLISHED_F1_F2[variant][f - 1] / 100
        row = summary[(summary["filters"] == f) & (summary["variant"] == variant)].iloc[0]
        expected = {"n": 8, "mean_accuracy": acc.mean(), "mean_accuracy_lo": lo, "mean_accuracy_hi": hi,
                    "successes": k, "p_success": k / 8, "p_success_lo": wilson.low, "p_success_hi": wilson.high,
                    "published_mean_accuracy": published, "difference": acc.mean() - published}
        assert row[list(expected)].to_dict() == pytest.approx(expected)
        assert {m: children[(f, variant)][m] for m in expected if m not in ("difference",)} == pytest.approx(
            {m: v for m, v in expected.items() if m != "difference"})
        assert metrics[f"p_success_F{f}_{variant}"] == pytest.approx(k / 8)
        assert metrics[f"mean_accuracy_F{f}_{variant}"] == pytest.approx(acc.mean())
        line = f"F = {f}: {100 * acc.mean():5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] ({100 * published:.1f}%)"
        assert sum(line in text for text in lines) == 1, (line, lines)


@pytest.mark.parametrize("values,needle", [
    ({"variant": "random"}, "--variant"),
    ({"test_seed": 3}, "one of the training seeds"),
    ({"filters": (0, 2)}, "--filters"),
    ({"success": 1.5}, "--success"),
])
def test_bad_options_fail_in_one_line(values, needle):
    with pytest.raises(ConfigError, match=needle):
        PatternCapacityConfig(**values)
