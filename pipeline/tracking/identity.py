"""What a run is: the tags that say which configuration, code, data and environment made it.

Every stage run carries (``stage_run`` and ``provenance.log_config`` set them):

- ``identity.config``: a digest of the params that define it (``parsing.defining_params``, the
  config class included, canonical JSON), without the references to other runs;
- ``identity.code``: the git commit, ``-dirty`` appended when the tree has changes
  (``identity.code_dirty``); outside a git checkout, the package version and a digest of the
  installed source (``pipeline-<version>+src-<digest>``);
- ``identity.inputs``: for a run that reads another run (``--data-uri``, a model, a capacity run),
  a digest of that run's identity; ``identity.data.<context>``: the MLflow digest of each dataset
  the run logs;
- ``identity.torch``, ``identity.mlflow``, ``identity.optuna``, ``identity.device``;
- ``identity.key``: the digest of config, code and inputs: two runs with the same key did the same
  work on the same code and data (a dirty tree gives no key);
- ``identity.request``: the key of what ``pipeline main`` asked of the stage (``first_run_tags``), by
  which the next ``main`` finds the run to reuse (``find_requested``).

One ``git`` call per process (``git describe --always --dirty``, about 10 ms), cached.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipeline.config.parsing import defining_params

PREFIX = "identity."
KEY = PREFIX + "key"
REQUEST = PREFIX + "request"
INPUT_FIELDS = ("data_uri", "model_uri", "run_id", "capacity_run")  # fields that name another run
PACKAGE = Path(__file__).resolve().parents[1]


def digest(value: Any, size: int = 16) -> str:
    """A short sha256 of ``value`` as canonical JSON (sorted keys)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:size]


@functools.lru_cache(maxsize=1)
def code_version() -> tuple[str, bool]:
    """(code version, dirty?): the git commit (``<sha>-dirty`` with changes), else the package version and
    a digest of the installed source (never dirty: it is what is installed)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=PACKAGE,
                             capture_output=True, text=True, timeout=5)
        text = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        text = ""
    if re.fullmatch(r"(.*-g)?[0-9a-f]{40}(-dirty)?", text):
        sha = text.removesuffix("-dirty")[-40:]
        return (sha + "-dirty", True) if text.endswith("-dirty") else (sha, False)
    return f"pipeline-{_version()}+src-{source_digest()}", False


def _version() -> str:
    try:
        return metadata.version("convnet-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"


def source_digest() -> str:
    """A digest of every ``.py`` file of the installed package (path and content)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def git_commit() -> str | None:
    """The commit of this checkout (None outside git, or with no commit)."""
    code, _ = code_version()
    return None if code.startswith("pipeline-") else code.removesuffix("-dirty")


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    """The versions that can change a result: torch, mlflow, optuna (read from the installed metadata)."""
    out = {}
    for name in ("torch", "mlflow", "optuna"):
        try:
            out[PREFIX + name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[PREFIX + name] = "absent"
    return out


def code_tags() -> dict[str, str]:
    """The tags that every run gets when it starts: code version and environment."""
    code, dirty = code_version()
    return {PREFIX + "code": code, PREFIX + "code_dirty": str(dirty).lower(), **environment()}


def config_digest(cfg: Any) -> str:
    """The digest of what defines a run of ``cfg``: its class and defining params, references to other runs left out."""
    params = {k: v for k, v in defining_params(cfg).items() if k not in INPUT_FIELDS}
    return digest({"config": type(cfg).__name__, "params": params})


def source_run_id(reference: str | None) -> str | None:
    """The run a reference names: ``runs:/<id>/...``, a bare run id, or ``models:/m-...`` (a logged model's run)."""
    if not reference:
        return None
    m = re.fullmatch(r"runs:/([0-9a-f]{32})(/.*)?", reference)
    if m:
        return m.group(1)
    if re.fullmatch(r"[0-9a-f]{32}", reference):
        return reference
    m = re.fullmatch(r"models:/(m-[0-9a-f]+)", reference)
    if m:
        import mlflow

        return mlflow.get_logged_model(m.group(1)).source_run_id
    return None


def inputs_digest(cfg: Any) -> str | None:
    """A digest of the identities of the runs that ``cfg`` reads (their ``identity.key``, else their id; a path
    or URL as written), or None when it reads none."""
    import mlflow

    refs = {f: getattr(cfg, f) for f in INPUT_FIELDS if getattr(cfg, f, None)}
    if not refs:
        return None
    found = {}
    for field, ref in sorted(refs.items()):
        run_id = source_run_id(ref)
        if run_id is None:
            found[field] = ref
            continue
        tags = mlflow.MlflowClient().get_run(run_id).data.tags
        found[field] = {k: v for k, v in tags.items() if k == KEY or k.startswith(PREFIX + "data.")} or run_id
    return digest(found)


def device_of(cfg: Any) -> str:
    """The device a run of ``cfg`` computes on: its --device, else cuda when there is one, else cpu."""
    import sys

    device = getattr(cfg, "device", None)
    if device and device != "auto":
        return str(device)
    torch = sys.modules.get("torch")
    return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def key_of(cfg: Any, inputs: str | None = None) -> str | None:
    """The identity key of a run of ``cfg`` on this code (None for a dirty tree: its code is not a commit)."""
    code, dirty = code_version()
    if dirty:
        return None
    return digest({"config": config_digest(cfg), "code": code, "inputs": inputs})


def config_tags(cfg: Any) -> dict[str, str]:
    """The tags that a run of ``cfg`` gets with its config: config digest, inputs, device and key."""
    inputs = inputs_digest(cfg)
    tags = {PREFIX + "config": config_digest(cfg), PREFIX + "device": device_of(cfg)}
    if inputs:
        tags[PREFIX + "inputs"] = inputs
    key = key_of(cfg, inputs)
    if key:
        tags[KEY] = key
    return tags


def tag_config(cfg: Any) -> None:
    """Tag the active run with ``config_tags(cfg)``."""
    import mlflow

    mlflow.set_tags(config_tags(cfg))


def data_tag(context: str) -> str:
    return f"{PREFIX}data.{context}"


_pending: dict[str, str] = {}  # the tags that the next run to start takes (``first_run_tags``)


@contextlib.contextmanager
def first_run_tags(tags: Mapping[str, str | None]) -> Iterator[None]:
    """The first run started inside gets ``tags`` (those with a value): e.g. ``identity.request=<key>``, what
    ``pipeline main`` asked of a stage before the stage resolved it (recipe, data), by which the next ``main``
    finds the run (``find_requested``); or ``reproduces=<id>``."""
    _pending.clear()
    _pending.update({k: v for k, v in tags.items() if v})
    try:
        yield
    finally:
        _pending.clear()


def take_pending() -> dict[str, str]:
    """The pending tags, for the run that starts now (then no other run gets them)."""
    out = dict(_pending)
    _pending.clear()
    return out


def find_requested(key: str | None, experiment_id: str) -> Any | None:
    """The newest FINISHED run in the experiment tagged ``identity.request=<key>``, or None (none, or no key)."""
    import mlflow

    if key is None:
        return None
    found = mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{REQUEST}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def differences(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    """Which of code, data and environment differ between two runs' tags: e.g. ['code', 'environment']."""
    def pick(tags: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, str]:
        return {k: v for k, v in tags.items() if k.startswith(keys)}

    groups = {"code": (PREFIX + "code",), "data": (PREFIX + "data.", PREFIX + "inputs"),
              "environment": (PREFIX + "torch", PREFIX + "mlflow", PREFIX + "optuna", PREFIX + "device")}
    return [name for name, keys in groups.items() if pick(a, keys) != pick(b, keys)]
