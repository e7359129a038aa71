"""Click options made from a stage's config dataclass: one ``--option`` per field, with its help
and default text, so that defaults and help live in one place (the dataclass)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click

from pipeline.config.parsing import build_config, field_kind
from pipeline.config.recipes import FALLBACKS, RECIPES


def _default_text(f: dataclasses.Field, recipes: bool = True) -> str:
    d = f.default
    if d is None:
        if recipes and f.name in _RECIPE_KEYS:
            return "recipe's value"
        if f.name == "recipe":
            return "the data set's"
        return str(FALLBACKS[f.name]) if f.name in FALLBACKS else "none"
    if isinstance(d, tuple):
        return ",".join(map(str, d))
    return str(d)


_RECIPE_KEYS = {k for r in RECIPES.values() for k in r.values}


def config_options(cls: type) -> Callable:
    """Add one ``--option`` per field of ``cls``; the command receives ``config=cls(...)``."""

    names = {f.name for f in dataclasses.fields(cls)}

    def decorator(fn: Callable) -> Callable:
        def wrapper(**kwargs: Any) -> Any:  # what is not a field (a click.argument) is passed on as it is
            given = {k: v for k, v in kwargs.items() if v is not None and k in names}
            return fn(config=build_config(cls, given), **{k: v for k, v in kwargs.items() if k not in names})

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        recipes = any(f.name == "recipe" for f in dataclasses.fields(cls))  # else no option falls back to one
        for f in reversed(dataclasses.fields(cls)):
            base, _ = field_kind(f)
            help_text = f"{f.metadata.get('help', '')} [default: {_default_text(f, recipes)}]"
            flag = "--" + f.name.replace("_", "-")
            if base is bool:  # `--download` alone means true; `--download false` suits MLproject templates
                wrapper = click.option(flag, f.name, is_flag=False, flag_value="true", default=None,
                                       metavar="[BOOL]", help=help_text)(wrapper)
            else:
                metavar = "LIST" if base is tuple or getattr(base, "__origin__", None) is tuple else base.__name__.upper()
                wrapper = click.option(flag, f.name, type=str, default=None, metavar=metavar, help=help_text)(wrapper)
        return wrapper

    return decorator
