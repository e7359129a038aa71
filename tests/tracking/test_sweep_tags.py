"""Workers that finish together tag the same best trial's run: losing that race on PostgreSQL is not an error."""
from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from pipeline.tracking import sweeps

RACE = MlflowException('(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "tag_pk"')


class Client:
    """An MLflow client whose set_tag loses the race; the run holds ``tags`` afterwards."""

    def __init__(self, tags: dict[str, str], error: Exception = RACE):
        self.tags, self.error = tags, error

    def set_tag(self, run_id, key, value):
        raise self.error

    def get_run(self, run_id):
        data = type("Data", (), {"tags": self.tags})
        return type("Run", (), {"data": data})


def test_a_lost_race_with_the_tag_in_place_is_done():
    sweeps.tag_best(Client({"best_trial": "true"}), ["r1"])


@pytest.mark.parametrize("client", [Client({}), Client({"best_trial": "true"}, MlflowException("RESOURCE_DOES_NOT_EXIST"))],
                         ids=["tag-missing", "another-error"])
def test_anything_else_still_fails(client):
    with pytest.raises(MlflowException):
        sweeps.tag_best(client, ["r1"])


def test_a_better_trial_of_a_resumed_study_takes_the_tag_from_the_earlier_best(tmp_path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("tags", artifact_location=str(tmp_path / "artifacts"))
    ids = {name: client.create_run(experiment, tags={"study_name": study}).info.run_id
           for name, study in (("first", "s"), ("better", "s"), ("other-study", "t"))}
    with mlflow.start_run(experiment_id=experiment):  # the sweep's parent run
        sweeps.tag_best(client, [ids["first"], ids["other-study"]], "s")
        sweeps.tag_best(client, [ids["better"]], "s")  # a later sweep of study s found a better trial
    tagged = {name for name, run_id in ids.items() if client.get_run(run_id).data.tags.get("best_trial") == "true"}
    assert tagged == {"better", "other-study"}  # another study's best keeps its tag
