"""Workers that share a study never duplicate work.

A grace period shorter than twice the heartbeat is refused (live trials would be failed as
stale and run twice); each worker's sampler has its own seed; and while a configuration is
untried, no trial gets one that another trial holds, even when two workers with the same
sampler seed ask at the same moment.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from errorpath import case, run_case, run_table_as_processes
from helpers import REPO

CASES = [
    case("grace-below-twice-the-heartbeat", "sweep", "--heartbeat-interval", "10", "--grace-period", "19",
         needle="--grace-period 20 or more"),
    case("grace-without-heartbeat-is-fine-but-zero-is-not", "sweep", "--grace-period", "0", needle="--grace-period"),
    case("grace-with-heartbeats-off", "sweep", "--heartbeat-interval", "0", "--grace-period", "30",
         needle="--heartbeat-interval 0 turns them off"),
    case("worker-index-negative", "sweep", "--worker-index", "-1", needle="--worker-index"),
]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_worker_settings_in_process(c, error_world):
    run_case(c, error_world)


def test_worker_seeds_are_reproducible_distinct_or_random():
    from pipeline.sweep.workers import worker_seed

    assert worker_seed(7, 0) == 7  # worker 0 is the single worker of earlier sweeps
    seeds = [worker_seed(7, i) for i in range(200)]
    assert seeds == [worker_seed(7, i) for i in range(200)] and len(set(seeds)) == 200
    assert all(0 <= s < 2**32 for s in seeds) and worker_seed(8, 1) != worker_seed(7, 1)
    assert len({worker_seed(7, None) for _ in range(5)}) == 5


def _study(storage, seed, sampler="tpe"):
    import optuna

    from pipeline.config.studies import SweepConfig
    from pipeline.sweep.space import grid_space, make_sampler
    from pipeline.sweep.workers import FreshPoints
    from pipeline.tracking.stores import store_init_lock

    cfg = SweepConfig(filters=(1, 2, 3, 4), kernel_sizes=(3, 5), sampler=sampler)
    wrapped = FreshPoints(make_sampler(cfg, seed), grid_space(cfg), seed, lambda: store_init_lock(storage, "s"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name="w", storage=storage, load_if_exists=True, sampler=wrapped), cfg


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_two_workers_with_one_seed_never_hold_the_same_point(tmp_path, sampler):
    from pipeline.sweep.space import suggest

    storage = f"sqlite:///{tmp_path / 'w.db'}"
    (a, cfg), (b, _) = _study(storage, 0, sampler), _study(storage, 0, sampler)  # the same seed: the old failure
    points = []
    for _ in range(4):  # both ask before either tells: two trials RUNNING at once
        ta, tb = a.ask(), b.ask()
        pa, pb = suggest(ta, cfg), suggest(tb, cfg)
        points += [tuple(pa.values()), tuple(pb.values())]
        a.tell(ta, 0.5)
        b.tell(tb, 0.5)
    assert len(set(points)) == 8  # every configuration once while some were untried
    extra = a.ask()  # all tried: the sampler may now repeat one
    assert tuple(suggest(extra, cfg).values()) in set(points)


def test_a_retried_trial_keeps_its_point(tmp_path):
    from optuna.trial import TrialState

    from pipeline.sweep.space import suggest

    storage = f"sqlite:///{tmp_path / 'w.db'}"
    study, cfg = _study(storage, 0)
    first = study.ask()
    point = suggest(first, cfg)
    study.tell(first, state=TrialState.FAIL)
    study.enqueue_trial(point)
    again = study.ask()
    assert suggest(again, cfg) == point  # a failed trial's point is free to be retried


@pytest.mark.slow
def test_two_workers_started_together_do_not_duplicate(tmp_path):
    """The README's recipe on one machine: the same command twice at once, default storage, no index."""
    import optuna

    args = [sys.executable, "-m", "pipeline", "sweep", "--study-name", "pair", "--n-trials", "6",
            "--filters", "1-4", "--kernel-sizes", "3,5,7", "--seeds", "8", "--epochs", "60", "--progress", "false"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("MLFLOW_RUN_ID", None)
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and "Traceback" not in err, err[-2000:]
    study = optuna.load_study(study_name="pair", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(points) == 12 and len(set(points)) == 12  # 12 configurations, 12 distinct trials


@pytest.mark.slow
def test_worker_settings_as_real_processes(error_world):
    run_table_as_processes(CASES, error_world)


@pytest.mark.parametrize("error,status", [(KeyboardInterrupt, "KILLED"), (OSError, "FAILED")])
def test_a_trial_run_is_ended_when_its_trial_cannot_record_it(tracking_uri, error, status):
    """The storage fails (or a signal comes) right after the trial's MLflow run is made: the run ends
    FAILED (KILLED) instead of staying RUNNING with no trial pointing at it."""
    import mlflow

    from pipeline.config.studies import SweepConfig
    from pipeline.sweep.trials import TrialRun

    class Trial:
        number = 0

        def set_user_attr(self, key, value):
            raise error  # KeyboardInterrupt: what a signal looks like here

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.create_experiment("t")
    with pytest.raises(error):
        TrialRun(client, experiment, "parent", Trial(), SweepConfig(), {"filters": 2, "kernel_size": 3})
    (run,) = client.search_runs([experiment])
    assert run.info.status == status
