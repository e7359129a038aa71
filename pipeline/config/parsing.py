"""Strings from the CLI, MLproject and MLflow params into typed config values."""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Mapping

from pipeline.config.fields import IF_CHANGED, IMAGES, SETTING, SYNTHETIC
from pipeline.errors import ConfigError


def parse_int_list(text: str | int | tuple | list | None) -> tuple[int, ...] | None:
    """'3' -> (3,), '6,16' -> (6, 16), '1-8' -> (1, ..., 8), '' -> None (recipe's value)."""
    if text is None:
        return None
    if isinstance(text, int):
        return (text,)
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    text = str(text).strip()
    if text == "" or text.lower() == "none":
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ConfigError(f"empty item in list {text!r}")
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ConfigError(f"empty range {part!r} (end {hi} < start {lo})")
            out.extend(range(lo, hi + 1))
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise ConfigError(f"not an integer list: {text!r} (use e.g. 3 or 6,16 or 1-8)") from None
    return tuple(out)


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) of a field annotation such as ``float | None``."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | {"tuple": tuple})  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def field_kind(f: dataclasses.Field) -> tuple[Any, bool]:
    return _base_type(f.type)


def parse_value(f: dataclasses.Field, value: Any) -> Any:
    """Convert a CLI / MLproject string to the field's type ('' or 'none' -> None for optionals)."""
    base, optional = field_kind(f)
    if value is None:
        return None
    if isinstance(value, str) and optional and value.strip().lower() in ("", "none", "''", '""'):
        # ("''" is how `mlflow run` logs an empty -P value; it means "not given" too)
        return None
    if typing.get_origin(base) is tuple or base is tuple:
        try:
            return parse_int_list(value)
        except ConfigError as err:
            raise ConfigError(f"--{f.name.replace('_', '-')}: {err}") from None
    if base is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{f.name.replace('_', '-')}: not a boolean: {value!r}")
    try:
        if base is int:
            fv = float(value)
            if fv != int(fv):
                raise ValueError
            return int(fv)
        if base is float:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--{f.name.replace('_', '-')}: expected {base.__name__}, got {value!r}"
        ) from None
    return str(value)


def build_config(cls: type, values: Mapping[str, Any]) -> Any:
    """Build ``cls`` from string or typed values, rejecting unknown keys loudly."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}")
    return cls(**{k: parse_value(names[k], v) for k, v in values.items()})


def defining_params(cfg: Any) -> dict[str, str]:
    """The params that define a run of ``cfg``: what the runs table should show and compare.

    Fields marked as settings (tracking, threads, printing, locations), fields without a value,
    and data options of the other kind of data (``n`` for images, ``split_seed`` for the
    synthetic set) are left out; ``config.json`` holds them all.
    """
    # the data in force: given, or the recipe's (`capacity --recipe mnist-small` is on images)
    dataset = cfg.recipe_value("dataset") if hasattr(cfg, "recipe_value") else getattr(cfg, "dataset", None)
    kind = SYNTHETIC if (dataset or "synthetic") == "synthetic" else IMAGES
    out = {}
    for f in dataclasses.fields(cfg):
        role = f.metadata.get("param", True)
        value = getattr(cfg, f.name)
        if role is SETTING or value is None or value == "" or (role in (SYNTHETIC, IMAGES) and role != kind):
            continue
        if role == IF_CHANGED and value == f.default:
            continue
        out[f.name] = as_text(value)
    return out


def as_text(value: Any) -> str:
    """A config value as its option is written (and as its param shows): 1,2,4 for a tuple."""
    return ",".join(str(x) for x in value) if isinstance(value, tuple) else str(value)
