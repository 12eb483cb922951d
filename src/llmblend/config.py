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


# A config expands to a few thousand YAML nodes (paper.yaml: ~2,000); aliases that expand to more
# are a "billion laughs" file, refused before anything walks the expansion
MAX_YAML_NODES = 200_000
# error messages quote values (jsonschema repeats the whole bad instance): cut each to a readable line
MAX_MESSAGE_CHARS = 300


def _short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


def _expanded_nodes(node, memo: dict) -> int:
    """How many nodes `node` stands for once every alias is expanded (shared subtrees counted once
    per use, computed once each: linear in the file, whatever the expansion)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_YAML_NODES + 1  # a recursive alias expands without end
    if isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_nodes(k, memo) + _expanded_nodes(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_nodes(v, memo) for v in node.value)
    else:
        n = 1
    memo[id(node)] = n
    return n


def _safe_load(text: str, path):
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_nodes(node, {}) > MAX_YAML_NODES:
            raise ConfigError(f"{path}: refused: its aliases expand to more than {MAX_YAML_NODES:,} YAML nodes "
                              "(a config needs a few thousand)")
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({_short(str(e), 120)})") from None
    try:
        data = _safe_load(text, path)
    except RecursionError:  # the YAML parser recurses once per nesting level
        raise ConfigError(f"{path}: refused: nested too deeply (a config is a few levels deep)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(_short(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})")) from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty (a profile sets at least `run`, "
                          "the name of its data/<run>/ and results/<run>/ folders)")
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


def origin_of(path: str, origin: dict) -> str:
    """The file that set dotted key `path`: the key itself, a key under it (a mapping set whole), or
    the nearest key above it (a list, whose items are set with it)."""
    if path in origin:
        return origin[path]
    under = sorted({v for k, v in origin.items() if k.startswith(path + ".")})
    if under:
        return ", ".join(under)
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:i]) in origin:
            return origin[".".join(parts[:i])]
    return "?"


def _fmt_error(err, origin: dict) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    if "propertyNames" in err.absolute_schema_path:  # a bad name: the error is about the key itself
        path = f"{path}.{err.instance}"
        return _short(f"config key '{path}' (set in {origin_of(path, origin)}): the name {err.message}")
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        keys = ", ".join(f"{path + '.' if path else ''}{k}" for k in extra)
        src = {origin_of(f"{path + '.' if path else ''}{k}", origin) for k in extra}
        return _short(f"unknown config key {keys} (set in {', '.join(sorted(src))})")
    if err.validator == "required":
        return _short(f"config key '{path or '<top>'}' is missing a required key: {err.message}")
    return _short(f"config key '{path or '<top>'}' (set in {origin_of(path, origin)}): {err.message}")


def validate(cfg: dict, origin: dict | None = None, files=None) -> None:
    """Validate the merged config; `files` (in merge order) lets a missing key say what comes first."""
    errors = sorted(_validator().iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        # the most specific error first: it names the deepest bad key
        errors.sort(key=lambda e: -len(e.absolute_path))
        msgs = [_fmt_error(e, origin or {}) for e in errors[:5]]
        if len(errors) > 5:
            msgs.append(f"and {len(errors) - 5} more")
        files = [str(f) for f in files or []]
        if files and Path(files[0]).name != DEFAULT_CONFIG and any(e.validator == "required" for e in errors):
            msgs.append(f"{files[0]} is read first: a profile overlays {DEFAULT_CONFIG}, so pass "
                        f"--config {DEFAULT_CONFIG} before it (--config {DEFAULT_CONFIG} --config {files[0]})")
        raise ConfigError("invalid config: " + "; ".join(msgs))
    _check_methods(cfg, origin or {})


def _check_methods(cfg: dict, origin: dict) -> None:
    """Each name in ranker.methods is a row of the method table (llmblend.ranker.methods, the one list
    of them; the schema checks only that it is a string)."""
    from llmblend.ranker.methods import method

    rcfg = cfg.get("ranker") or {}
    names = rcfg.get("methods") or []
    for i, name in enumerate(names):
        where = f"config key 'ranker.methods.{i}' (set in {origin_of(f'ranker.methods.{i}', origin)})"
        try:
            row = method(name)
        except ConfigError as e:
            raise ConfigError(f"{where}: {str(e).split(': ', 1)[1]}") from None
        missing = [p for p in row.parts if p not in names]
        if missing:  # a combined method reads the rankings of its parts: their jobs must exist
            raise ConfigError(f"{where}: {name} combines {', '.join(row.parts)}; add {', '.join(missing)} to ranker.methods")
        if row.reads == "encoder" and not (rcfg.get("consensus") or {}).get("encoder"):
            raise ConfigError(f"{where}: {name} needs a sentence encoder: set ranker.consensus.encoder")


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
    validate(cfg, origin, paths)
    check_scored_splits(cfg, origin)
    cfg = copy.deepcopy(cfg)
    cfg["_files"] = [str(p) for p in paths]
    from llmblend.models.precision import resolve_auto

    resolve_auto(cfg)  # `auto` precision -> bf16 or fp32 on this job's device (cfg["_precision"] says which)
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


@lru_cache(maxsize=None)
def _schema_doc(top: str) -> dict:
    return yaml.safe_load((SCHEMA_DIR / f"{top}.schema.yaml").read_text(encoding="utf-8"))


def schema_node(dotted: str) -> dict:
    """The schema of a config key, e.g. "fuser.train" (a local $ref followed); `items` steps into the
    entries of a list, e.g. "generate.generators.items.decoding"."""
    top, *keys = dotted.split(".")
    doc = node = _schema_doc(top)
    for k in keys:
        node = node.get("items") if k == "items" else (node.get("properties") or {}).get(k)
        if node is None:
            raise KeyError(f"{dotted}: not a key of {top}.schema.yaml")
        if str(node.get("$ref", "")).startswith("#/"):  # a shared definition of the same file
            ref, node = node["$ref"], doc
            for part in ref[2:].split("/"):
                node = node[part]
    return node


def schema_default(dotted: str):
    """The `default` a section's schema declares for an optional key, e.g. "ranker.length_sharing".
    The schema is the one place such a default lives: a profile that leaves the key out gets it."""
    node = schema_node(dotted)
    if "default" not in node:
        raise KeyError(f"{dotted}: {dotted.split('.')[0]}.schema.yaml declares no default for it")
    return copy.deepcopy(node["default"])


def schema_defaults(dotted: str) -> dict:
    """Every default the schema declares for the keys of section `dotted` (e.g. "fuser.train"), in
    schema order; a sub-section without a default of its own gives the dict of its keys' defaults."""
    out = {}
    for k in schema_node(dotted).get("properties") or {}:
        node = schema_node(f"{dotted}.{k}")
        if "default" in node:
            out[k] = schema_default(f"{dotted}.{k}")
        elif node.get("properties") and schema_defaults(f"{dotted}.{k}"):
            out[k] = schema_defaults(f"{dotted}.{k}")
    return out


def setting(cfg: dict, dotted: str):
    """The value of dotted key `dotted` in `cfg`, or its schema default when a profile leaves it out
    (or sets it to null)."""
    node = cfg
    for k in dotted.split("."):
        if not isinstance(node, dict) or node.get(k) is None:
            return schema_default(dotted)
        node = node[k]
    return node


# keys every stage may read without declaring them: the run's name (its roots data/<run>, results/<run>
# are in every path a rule names), the config files themselves, what an `auto` precision became on this
# machine (llmblend.models.precision: the declared key holds the rule) and how often a training saves its
# resume state (when a killed job can resume from, not what it computes). A job's threads are no key
# of a section: the rule passes them (--threads {threads}, llmblend.cli.add_threads)
AMBIENT_KEYS = ("run", "_files", "_precision", "ranker.checkpoint_seconds")


class UndeclaredKeyError(ConfigError):
    """A stage read a config key that its rule does not declare."""


class DeclaredConfig(dict):
    """The config as one stage may read it: only the keys its rule declares (`--keys`, the same list
    as the rule's `cfg` param, which Snakemake compares to rerun the rule and `export-dvc` lists as
    the DVC stage's params). Reading any other key, present or not, raises UndeclaredKeyError naming
    it: a setting the stage reads but the rule does not declare would change the stage's output
    without rerunning it. A fully declared section is a plain dict; a partly declared one is a
    DeclaredConfig of its own. Iterating gives the declared keys that are present. A plain copy of a
    partly declared section (`dict(view)`) holds those keys only and checks nothing: read the view."""

    def __init__(self, visible: dict, allowed: dict, path: str, declared: tuple[str, ...]):
        super().__init__(visible)
        self._allowed, self._path, self._declared = allowed, path, declared

    def _check(self, key) -> None:
        if key not in self._allowed:
            raise UndeclaredKeyError(
                f"config key '{self._path}{key}' is read by this stage, but its rule does not declare it "
                f"(declared: {', '.join(self._declared) or 'none'}); add it to the rule's config keys "
                "in workflow/rules/ so that changing it reruns the stage")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        self._check(key)
        return super().__contains__(key)

    def setdefault(self, key, default=None):
        self._check(key)
        return super().setdefault(key, default)

    def pop(self, key, *default):
        self._check(key)
        return super().pop(key, *default)


# yaml.safe_dump writes a restricted config as the mapping it is (a report may show it)
yaml.SafeDumper.add_representer(DeclaredConfig, yaml.representer.SafeRepresenter.represent_dict)


def _key_tree(keys) -> dict:
    """"a.b" and "a.c.d" -> {"a": {"b": True, "c": {"d": True}}}; a key covers every key below it."""
    tree: dict = {}
    for dotted in keys:
        node, parts = tree, dotted.split(".")
        for part in parts[:-1]:
            if node.get(part) is True:
                break
            node = node.setdefault(part, {})
        else:
            node[parts[-1]] = True
    return tree


def _restricted(node: dict, allowed: dict, path: str, declared: tuple[str, ...]) -> DeclaredConfig:
    visible = {}
    for key, sub in allowed.items():
        if key in node:
            value = node[key]
            visible[key] = (_restricted(value, sub, f"{path}{key}.", declared)
                            if sub is not True and isinstance(value, dict) else value)
    return DeclaredConfig(visible, allowed, path, declared)


def restrict(cfg: dict, keys) -> DeclaredConfig:
    """`cfg` as a stage whose rule declares `keys` (dotted) may read it (see DeclaredConfig)."""
    declared = tuple(keys)
    return _restricted(cfg, _key_tree([*declared, *AMBIENT_KEYS]), "", declared)
