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
