"""One configuration: params.yaml (the default profile) with optional overlay profiles on top.

`load_config(["params.yaml", "config/ci.yaml"])` deep-merges the files in order (mappings merge,
everything else is replaced), remembers which file set each leaf, and validates the result against
`schemas/config.schema.yaml`. A bad key is reported with its dotted path and the file it came from.
Snakemake (configfile + --configfile) and the CLI (--config, repeatable) use the same files, so a
rule's command line and its DVC stage read exactly the same configuration.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path

import yaml

from llmblend.errors import ConfigError

SCHEMA_DIR = Path(__file__).parent / "schemas"
DEFAULT_CONFIG = "params.yaml"


def _merge(base: dict, over: dict, origin: dict, src: str, prefix: str = "") -> dict:
    out = dict(base)
    for key, value in over.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origin, src, path + ".")
        else:
            out[key] = copy.deepcopy(value)
            for k in [k for k in origin if k == path or k.startswith(path + ".")]:
                del origin[k]
            _record_origin(value, path, origin, src)
    return out


def _record_origin(value, path, origin, src):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _record_origin(v, f"{path}.{k}", origin, src)
    else:
        origin[path] = src


def read_yaml(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return data


def merge_files(paths) -> tuple[dict, dict]:
    """Return (merged config, origin map of dotted leaf key -> file)."""
    cfg: dict = {}
    origin: dict = {}
    for p in paths:
        cfg = _merge(cfg, read_yaml(p), origin, str(p))
    return cfg, origin


@lru_cache(maxsize=1)
def _validator():
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = []
    for f in sorted(SCHEMA_DIR.glob("*.schema.yaml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        resources.append((f.name, Resource.from_contents(doc, default_specification=DRAFT202012)))
    registry = Registry().with_resources(resources)
    root = registry["config.schema.yaml"].contents
    return jsonschema.Draft202012Validator(root, registry=registry)


def _fmt_error(err, origin: dict) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        keys = ", ".join(f"{path + '.' if path else ''}{k}" for k in extra)
        src = {origin.get(f"{path + '.' if path else ''}{k}", "?") for k in extra}
        return f"unknown config key {keys} (set in {', '.join(sorted(src))})"
    if err.validator == "required":
        return f"config key '{path or '<top>'}' is missing a required key: {err.message}"
    src = origin.get(path) or next((v for k, v in origin.items() if k.startswith(path + ".")), "?")
    return f"config key '{path or '<top>'}' (set in {src}): {err.message}"


def validate(cfg: dict, origin: dict | None = None) -> None:
    errors = sorted(_validator().iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        # the most specific error first: it names the deepest bad key
        errors.sort(key=lambda e: -len(e.absolute_path))
        msgs = [_fmt_error(e, origin or {}) for e in errors[:5]]
        raise ConfigError("invalid config: " + "; ".join(msgs))


def check_scored_splits(cfg: dict, origin: dict | None = None) -> None:
    """metrics.splits must cover every split a later stage reads scores from: test (the tables),
    and train/val when the ranker learns from metrics or the fuser ranks by a metric oracle."""
    metrics = cfg.get("metrics")
    if not metrics:
        return
    splits, need = set(metrics["splits"]), {"test": "the evaluation tables"}
    ranker, fuser = cfg.get("ranker"), cfg.get("fuser")
    if ranker and ranker["signal"]["type"] == "metrics" and not ranker.get("pretrained"):
        need.update(train="ranker.signal.type: metrics", val="ranker.signal.type: metrics")
    fuser_data_ranker = fuser and (fuser.get("data_ranker") or fuser.get("ranker") or "")  # as fuser.data.data_ranker
    if fuser_data_ranker and fuser_data_ranker.startswith("oracle:") and not fuser.get("pretrained"):
        need.update(train=f"the fuser data ranker {fuser_data_ranker}", val=f"the fuser data ranker {fuser_data_ranker}")
    missing = [f"{s} (needed by {why})" for s, why in need.items() if s not in splits]
    if missing:
        src = (origin or {}).get("metrics.splits") or (origin or {}).get("metrics") or "the config"
        raise ConfigError(f"config key 'metrics.splits' (set in {src}): must include " + ", ".join(missing))


def load_config(paths=None) -> dict:
    """Merge and validate config files; the default is params.yaml alone."""
    paths = list(paths or [DEFAULT_CONFIG])
    cfg, origin = merge_files(paths)
    validate(cfg, origin)
    check_scored_splits(cfg, origin)
    cfg = copy.deepcopy(cfg)
    cfg["_files"] = [str(p) for p in paths]
    return cfg


def mirror_root(cfg: dict) -> str | None:
    """The local mirror of remote sources: the config's `mirror` when set, else the env var
    LLMBLEND_MIRROR (an explicit setting of a profile wins over the machine's default)."""
    return cfg.get("mirror") or os.environ.get("LLMBLEND_MIRROR") or None


def run_dirs(cfg: dict) -> dict:
    """Every profile writes under its own roots, so profiles never overwrite each other."""
    run = cfg["run"]
    return {"data": Path("data") / run, "results": Path("results") / run, "logs": Path("results") / run / "logs"}


def section(cfg: dict, *keys):
    """Fetch a nested section, naming the missing key when absent."""
    node = cfg
    for i, k in enumerate(keys):
        if not isinstance(node, dict) or k not in node:
            raise ConfigError(f"config key '{'.'.join(keys[: i + 1])}' is missing")
        node = node[k]
    return node
