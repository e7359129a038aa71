"""CLI options for image data: booleans that MLproject templates can pass, and the recipes listing."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config.options import config_options
from pipeline.config.stages import TrainConfig


@pytest.mark.parametrize("args,expected", [
    ([], (False, False)),
    (["--download"], (True, False)),  # a bare flag, as users type it
    (["--download", "--batch-norm", "--epochs", "2"], (True, True)),
    (["--download", "false", "--batch-norm", "true"], (False, True)),  # `-P download=false` in an MLproject
    (["--download=1", "--batch-norm=no"], (True, False)),
])
def test_boolean_options_take_an_optional_value(args, expected):
    seen = []

    @click.command()
    @config_options(TrainConfig)
    def probe(config):
        seen.append((config.download, config.batch_norm))

    result = CliRunner().invoke(probe, [*args, "--dataset", "digits"])  # --download is for image data
    assert result.exit_code == 0, result.output
    assert seen == [expected]


def test_recipes_lists_the_labs():
    out = CliRunner().invoke(cli, ["recipes"]).output
    for name in ("mnist-small", "fashion-lenet", "mnist-lenet", "mnist-rmsprop", "mnist-dropout", "cifar-lenet",
                 "digits-lenet"):
        assert f"\n{name}: " in out
    assert "    filters = 32,64,64" in out and "    optimizer = rmsprop" in out
