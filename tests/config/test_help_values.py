"""Help agrees with validation: a value that an option's help names as special is accepted.

Every Click option of every `pipeline` command is read; a help text that gives a number a
meaning (``0: torch's default``, ``0 = none``, ``0.0.0.0: every interface``) or lists a word
such as ``auto``, ``none`` or ``memory`` among the values names a special value. Each is passed
on the command line of its command, which parses it and builds the stage's config (every check
of the config runs) but stops before the stage starts.
"""
from __future__ import annotations

import re

import click
import pytest

from pipeline.cli import cli
from pipeline.config import options
from pipeline.errors import ConfigError

# a number that the help gives a meaning: "0: torch's default", "(0 = no sweep)"
NUMBER = re.compile(r"(?<![\w.$/<+-])(-?\d+(?:\.\d+)*)\s*[:=]\s")
# a word that names a special setting, as one item of a list of values: "auto | cpu", "..., memory"
WORD = re.compile(r"(?:^|[|,:]\s*)(auto|none|empty|memory|off|default)(?=\s*(?:[|,(]|$))")
# inputs that a command cannot build its config without (the runs it reads); any run id will do here
REQUIRED = {"evaluate": ["--run-id", "0" * 32], "inspect": ["--run-id", "0" * 32],
            "diagnose": ["--capacity-run", "0" * 32], "serve": ["--run-id", "0" * 32],
            "reproduce": ["0" * 32]}  # its argument: the run to reproduce
# a help that starts "images: ..." applies where the data are images: the value is passed there
SCOPES = {"images": ["--dataset", "digits"], "accuracy objective": ["--objective", "accuracy", "--dataset", "digits"]}


def special_values(help_text: str) -> list[str]:
    """The values that a help text names as special (the `[default: ...]` part is left out)."""
    text = help_text.split(" [default:")[0]
    return list(dict.fromkeys(NUMBER.findall(text) + WORD.findall(text)))


def cases() -> list[tuple[str, str, str]]:
    """(command, option, special value) for every option of every command."""
    out = []
    for name, cmd in sorted(cli.commands.items()):
        for param in cmd.params:
            if isinstance(param, click.Option) and param.help:
                out += [(name, param.opts[0], value) for value in special_values(param.help)]
    return out


def scope(command: str, option: str) -> list[str]:
    """The options that put ``command`` where ``option`` applies, from its help's "images: ..." prefix."""
    param = next(p for p in cli.commands[command].params if p.opts[0] == option)
    return SCOPES.get(param.help.split(":")[0], [])


class _Built(Exception):
    """Raised with the config once it is built, so that no stage runs."""


def build(monkeypatch, command: str, args: list[str]):
    """The config that `pipeline COMMAND ARGS` builds (the command's own parsing and checks)."""
    real = options.build_config

    def stop(cls, values):
        raise _Built(real(cls, values))

    monkeypatch.setattr(options, "build_config", stop)
    with pytest.raises(_Built) as built:
        cli.main([command, *REQUIRED.get(command, []), *args], standalone_mode=False)
    return built.value.args[0]


def test_the_help_reader_finds_special_values():
    assert special_values("torch CPU threads (0: torch's default) [default: 1]") == ["0"]
    assert special_values("minibatch size (>= 1; 0 = full batch, for the synthetic data only)") == ["0"]
    assert special_values("address to listen on (0.0.0.0: every interface)") == ["0.0.0.0"]
    assert special_values("auto | cpu | cuda [default: auto]") == ["auto"]
    assert special_values("median (stop a trial ...) | none [default: median]") == ["none"]
    assert special_values("sqlite:///FILE (default sqlite:///optuna.db), FILE.journal, memory") == ["memory"]
    assert special_values("SGD learning rate (published: 0.1)") == []
    assert special_values("seeds first_seed ... first_seed+seeds-1; success 0..S-1 (default 50)") == []


def test_every_command_builds_with_its_required_inputs(monkeypatch):
    for name, cmd in cli.commands.items():
        if any(isinstance(p, click.Option) for p in cmd.params):
            assert build(monkeypatch, name, []) is not None, name


def test_threads_zero_was_special_and_is_accepted_where_help_says_so():
    found = {(c, v) for c, o, v in cases() if o == "--threads"}
    assert {("capacity-pattern", "0"), ("diagnose", "0"), ("sweep", "0"), ("train", "0")} <= found


@pytest.mark.parametrize("command,option,value", cases(), ids=lambda x: str(x))
def test_a_special_value_in_help_is_accepted(monkeypatch, command, option, value):
    try:
        cfg = build(monkeypatch, command, [*scope(command, option), option, value])
    except (ConfigError, click.ClickException) as err:
        pytest.fail(f"`pipeline {command} {option} {value}`: its help names {value!r} as a value, "
                    f"but it is rejected: {err}")
    field = option[2:].replace("-", "_")
    if hasattr(cfg, field):  # the value arrived as given (a word may stand for None: `--pruner none`)
        got = getattr(cfg, field)
        assert got is None and value == "none" or _same(got, value), (option, value, got)


def _same(got, value: str) -> bool:
    if str(got) == value:
        return True
    try:
        return float(got) == float(value)
    except (TypeError, ValueError):
        return False
