"""What a study is: the settings that define its values, stored with the study when it is made.

Values from different objectives, data, search spaces, seed counts, tau or epochs cannot be
compared, so a study records these settings as Optuna study user attributes at creation
(readable by ``optuna-dashboard``, ``study.user_attrs`` and the UI) and a sweep that resumes
it with other settings is refused, in one line that lists the differences and suggests a
new ``--study-name``. The keys (``SETTINGS_KEYS``), always all present:

=============  ==================================================================================
objective      ``success`` (P(success) of the 1D detector over seeds) or ``accuracy`` (validation
               accuracy of one image model)
directions     Optuna's directions, e.g. ``["maximize"]``, ``["maximize", "minimize"]``
value_names    what each value is: ``p_success`` or ``val_accuracy``, then ``num_parameters``
dataset        ``synthetic``, ``digits``, ``mnist``, ...
recipe         the recipe whose settings the trials start from
model          ``detector1d``, ``lenet``, ...
data           the data options that fix the data set (synthetic: n, width, data_seed, test_seed,
               test_n; images: split_seed, val_fraction, test_fraction, normalize)
search_space   parameter name -> its choices; ``lr`` -> {"low", "high", "log"} when searched
seeds          initialisation seeds per trial (success: seeds 0..S-1; accuracy: from the model seed on)
tau            the success threshold on the final training loss (None for accuracy)
epochs         training epochs per trial
training       the optimiser settings that are not searched (lr, momentum, weight_decay; for
               images also optimizer, loss, batch_size, the model seed ...)
=============  ==================================================================================
"""
from __future__ import annotations

import json
from typing import Any

from pipeline.config.recipes import resolve
from pipeline.config.studies import SweepConfig
from pipeline.errors import ConfigError
from pipeline.sweep.space import metric_names, model_name, param_names

SETTINGS_KEYS = ("objective", "directions", "value_names", "dataset", "recipe", "model", "data", "search_space",
                 "seeds", "tau", "epochs", "training")


def study_directions(cfg: SweepConfig) -> list[str]:
    return ["maximize", "minimize"] if cfg.multi_objective else ["maximize"]


def search_space(cfg: SweepConfig) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for fname, kname in param_names(cfg):
        space[fname] = list(cfg.filters)
        space[kname] = list(cfg.kernel_sizes)
    if cfg.lr_min is not None:
        space["lr"] = {"low": cfg.lr_min, "high": cfg.lr_max, "log": True}
    return space


def study_settings(cfg: SweepConfig) -> dict[str, Any]:
    """The settings that define the values of ``cfg``'s study (JSON-ready)."""
    from pipeline.sweep.objectives import capacity_settings, train_config

    cfg = resolve(cfg)
    success = cfg.objective == "success"
    out: dict[str, Any] = {
        "objective": cfg.objective,
        "directions": study_directions(cfg),
        "value_names": metric_names(cfg),
        "dataset": cfg.dataset or "synthetic",
        "recipe": cfg.recipe,
        "model": model_name(cfg),
        "search_space": search_space(cfg),
    }
    if success:
        s = capacity_settings(cfg)
        out.update(data={k: getattr(s, k) for k in ("n", "width", "data_seed", "test_seed", "test_n")},
                   seeds=cfg.seed_count, tau=cfg.tau, epochs=s.epochs,
                   training={k: getattr(s, k) for k in ("lr", "momentum", "weight_decay")})
    else:
        t = resolve(train_config(cfg))
        out.update(data={k: getattr(t, k) for k in ("split_seed", "val_fraction", "test_fraction", "normalize")},
                   seeds=cfg.seed_count, tau=None, epochs=t.epochs,
                   training={k: getattr(t, k) for k in ("optimizer", "loss", "lr", "momentum", "weight_decay",
                                                        "batch_size", "seed", "padding", "dropout", "batch_norm",
                                                        "in_channels", "max_batches")
                             if not (k == "lr" and cfg.lr_min is not None)})
    return json.loads(json.dumps(out))  # tuples -> lists: as they come back from the storage


def differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'key: stored -> wanted' for every setting that differs (one level into dicts)."""
    out = []
    for key in SETTINGS_KEYS:
        old, new = stored.get(key), wanted.get(key)
        if key not in stored or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            out += [f"{key}.{k}: {_short(old.get(k))} -> {_short(new.get(k))}"
                    for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        else:
            out.append(f"{key}: {_short(old)} -> {_short(new)}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def record_or_check(study: Any, storage: Any, wanted: dict[str, Any]) -> None:
    """Store ``wanted`` on a study that has no settings yet; refuse one whose settings differ."""
    stored = stored_settings(study)
    refuse_other_settings(study, storage, stored, wanted)
    if set(stored) == {"directions"}:  # a new study (or one made by other code): what it is from now on
        for key in SETTINGS_KEYS:
            study.set_user_attr(key, wanted[key])


def stored_settings(study: Any) -> dict[str, Any]:
    """The settings that ``study`` was made with (its directions, for a study made by other code)."""
    stored = {k: v for k, v in study.user_attrs.items() if k in SETTINGS_KEYS}
    return stored or {"directions": [d.name.lower() for d in study.directions]}


def refuse_other_settings(study: Any, storage: Any, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    diff = differences(stored, wanted)
    if diff:
        raise ConfigError(f"study {study.study_name!r} was made with other settings ({'; '.join(diff)}); resume it "
                          f"with its own settings, or start a new study with --study-name {free_name(study, storage)}")


def free_name(study: Any, storage: Any) -> str:
    """``<name>-2`` (or the first of -3, -4 ... that the storage does not hold yet)."""
    import optuna

    names = set(optuna.study.get_all_study_names(storage))
    return next(f"{study.study_name}-{i}" for i in range(2, 10**6) if f"{study.study_name}-{i}" not in names)
