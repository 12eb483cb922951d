"""The config schema: every profile validates; a bad key is named with the file that set it."""

from pathlib import Path

import pytest
import yaml

from llmblend.config import load_config
from llmblend.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROFILES = [["params.yaml"]] + [["params.yaml", str(p.relative_to(ROOT))] for p in sorted((ROOT / "config").glob("*.yaml"))]


@pytest.mark.parametrize("files", PROFILES, ids=lambda f: f[-1])
def test_every_profile_validates_and_has_its_own_run(files, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(files)
    assert cfg["run"] == ("demo" if len(files) == 1 else Path(files[-1]).stem)


def test_profiles_have_distinct_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    runs = [load_config(f)["run"] for f in PROFILES]
    assert len(runs) == len(set(runs))


def overlay(tmp_path, doc):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(doc))
    return [str(ROOT / "params.yaml"), str(p)]


def test_unknown_key_is_named_with_its_file(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key data\.filterz \(set in .*bad\.yaml\)"):
        load_config(overlay(tmp_path, {"data": {"filterz": {}}}))


def test_wrong_type_is_named_with_its_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'seed' \(set in .*bad\.yaml\): 'x' is not of type 'integer'"):
        load_config(overlay(tmp_path, {"seed": "x"}))


def test_nested_bad_value(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.split\.mode"):
        load_config(overlay(tmp_path, {"data": {"split": {"mode": "random"}}}))


def test_invalid_yaml_names_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("run: x\ndata: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_config([str(ROOT / "params.yaml"), str(p)])


def test_metric_splits_must_cover_what_reads_scores(tmp_path):
    """A ranker trained on a metric needs train/val scored; the tables need test. The error names the key."""
    bad = tmp_path / "p.yaml"
    bad.write_text("metrics: {splits: [test]}\n")  # the default ranker learns from clm_logprob
    with pytest.raises(ConfigError, match=r"metrics\.splits.*p\.yaml.*train \(needed by ranker\.signal\.type: metrics\)"):
        load_config([ROOT / "params.yaml", bad])
    bad.write_text("metrics: {splits: [train, val]}\n")
    with pytest.raises(ConfigError, match=r"test \(needed by the evaluation tables\)"):
        load_config([ROOT / "params.yaml", bad])
    ok = tmp_path / "ok.yaml"
    ok.write_text("metrics: {splits: [test]}\nranker: {signal: {type: judge}}\njudge: {splits: [train, val, test]}\n")
    assert load_config([ROOT / "params.yaml", ok])["metrics"]["splits"] == ["test"]
