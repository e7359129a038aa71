"""Models the UI can compare: evaluate's test metrics belong to the model it evaluated (the Models tab shows them),
a registered model can be named by an alias, and `serve` takes models:/NAME@ALIAS."""
from __future__ import annotations

import socket

import pytest

from pipeline.config.stages import EvaluateConfig, TrainConfig
from pipeline.errors import ConfigError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_evaluate_links_its_test_metrics_to_the_model_and_an_alias_names_the_version(client):
    import mlflow

    from pipeline.evaluate import stage as evaluate
    from pipeline.tracking import serving
    from pipeline.train import stage as train

    trained = train.run(TrainConfig(epochs=20, filters=(2,), register_model="det", alias="champion",
                                    no_system_metrics=True), echo=lambda s: None)
    other = train.run(TrainConfig(epochs=20, filters=(3,), no_system_metrics=True), echo=lambda s: None)
    scored = evaluate.run(EvaluateConfig(run_id=trained.run_id), echo=lambda s: None)

    models = {m.source_run_id: m for m in mlflow.search_logged_models(output_format="list")}
    linked = {m.key: m.value for m in models[trained.run_id].metrics}
    evaluate_run = client.get_run(scored.run_id).data.metrics  # what the evaluate run itself holds
    assert linked["test_accuracy"] == evaluate_run["test_accuracy"] == scored.test_accuracy
    assert linked["unseen_accuracy"] == evaluate_run["unseen_accuracy"] == scored.unseen_accuracy
    tested = {m.run_id for m in models[trained.run_id].metrics if m.key.startswith(("test_", "unseen_"))}
    assert tested == {scored.run_id}  # measured by that evaluate run
    assert not models[other.run_id].metrics  # nobody evaluated it, and train links none of its run's metrics
    assert len(client.get_metric_history(scored.run_id, "test_accuracy")) == 1  # logged once, not twice

    version = client.get_model_version_by_alias("det", "champion")
    assert (version.run_id, version.version) == (trained.run_id, 1)
    assert serving.model_id_of("models:/det@champion") == models[trained.run_id].model_id
    serving.check_servable("models:/det@champion", "127.0.0.1", _free_port())  # serve's check of its --model-uri
    with pytest.raises(ConfigError, match="no model there"):
        serving.check_servable("models:/det@nobody", "127.0.0.1", _free_port())


@pytest.mark.parametrize("kwargs, message", [
    ({"alias": "champion"}, "give --register-model NAME too"),
    ({"alias": "v2", "register_model": "det"}, "name versions"),
    ({"alias": "a b", "register_model": "det"}, "letters, digits"),
])
def test_an_alias_needs_a_registered_model_and_a_name_that_is_not_a_version(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)
