"""Run identity: the digests that say which configuration, code and data made a run."""
from __future__ import annotations

import hashlib
import json

from pipeline.config.stages import EvaluateConfig, TrainConfig
from pipeline.tracking import identity


def test_config_digest_is_the_sha256_of_the_canonical_defining_params():
    cfg = TrainConfig(filters=(4,), seed=0, epochs=7)
    expected = hashlib.sha256(json.dumps(
        {"config": "TrainConfig", "params": {"n": "75", "width": "20", "data_seed": "0", "val_seed": "1",  # synthetic
                                            "filters": "4", "seed": "0", "epochs": "7"}},
        sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert identity.config_digest(cfg) == expected


def test_settings_and_run_references_leave_the_config_digest_unchanged():
    base = TrainConfig(filters=(4,), seed=0)
    assert identity.config_digest(base) == identity.config_digest(TrainConfig(filters=(4,), seed=0, threads=3))
    assert identity.config_digest(base) == identity.config_digest(
        TrainConfig(filters=(4,), seed=0, data_uri="runs:/" + "0" * 32 + "/data"))
    assert identity.config_digest(base) != identity.config_digest(TrainConfig(filters=(4,), seed=1))
    assert identity.config_digest(EvaluateConfig(model_uri="runs:/" + "0" * 32 + "/m")) != identity.config_digest(TrainConfig())


def test_source_run_of_a_reference():
    rid = "0123456789abcdef" * 2
    assert identity.source_run_id(f"runs:/{rid}/data") == rid
    assert identity.source_run_id(rid) == rid
    assert identity.source_run_id("/tmp/data.pt") is None


def test_a_dirty_tree_has_no_key(monkeypatch):
    monkeypatch.setattr(identity, "code_version", lambda: ("b" * 40 + "-dirty", True))
    assert identity.key_of(TrainConfig()) is None
    monkeypatch.setattr(identity, "code_version", lambda: ("b" * 40, False))
    assert identity.key_of(TrainConfig()) == identity.key_of(TrainConfig())
    assert identity.key_of(TrainConfig()) != identity.key_of(TrainConfig(), inputs="x")


def test_differences_name_code_data_and_environment():
    a = {"identity.code": "1", "identity.data.training": "d", "identity.torch": "2.1", "identity.device": "cpu"}
    assert identity.differences(a, dict(a)) == []
    assert identity.differences(a, {**a, "identity.code": "2"}) == ["code"]
    assert identity.differences(a, {**a, "identity.data.training": "e", "identity.torch": "2.2"}) == ["data",
                                                                                                        "environment"]


def test_the_code_version_is_this_checkout_s_commit():
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=identity.PACKAGE, capture_output=True, text=True)
    code, dirty = identity.code_version()
    assert code.removesuffix("-dirty") == head.stdout.strip() and dirty == code.endswith("-dirty")
