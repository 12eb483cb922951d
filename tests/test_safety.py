"""No input can reach outside the project, run code when read, or hide a run's outputs from its
collaborators (issue 20)."""

import os
import pickle
from pathlib import Path

import pytest
import yaml

from llmblend.config import load_config
from llmblend.errors import ConfigError, LLMBlendError

ROOT = Path(__file__).resolve().parents[1]
BASE = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval"


@pytest.mark.parametrize("url", [
    f"{BASE}/c0ffee/results/../../../../x/alpaca_eval_gpt4/annotations.json",  # models: ["../../../../x"]
    f"{BASE}/../results/m/annotations.json",                                   # commit: ".."
    f"{BASE}/c0ffee/results//etc/annotations.json",                           # models: ["/etc"]
    "https://huggingface.co/datasets/llm-blender/mix-instruct/resolve/main/./../x.jsonl",
])
def test_a_config_value_cannot_lead_a_fetch_outside_its_folder(tmp_path, url):
    from llmblend.data.fetch import fetch

    mirror = tmp_path / "mirror" / "a" / "b" / "c"
    mirror.mkdir(parents=True)
    # where the first URL's "../../../../x" lands without the check: a file beside the mirror
    outside = mirror.parent / "x" / "alpaca_eval_gpt4"
    outside.mkdir(parents=True)
    (outside / "annotations.json").write_text("[]")
    with pytest.raises(LLMBlendError, match=r"refused source .* would lead outside the mirror"):
        fetch(url, str(mirror))
    with pytest.raises(LLMBlendError, match="refused source"):
        fetch(url, None)  # no download either: it would be written outside data/_downloads/


@pytest.mark.parametrize("source", [
    {"type": "alpaca_eval", "commit": "abc", "models": ["../../../../x"]},
    {"type": "alpaca_eval", "commit": "..", "models": ["m"]},
])
def test_the_schema_refuses_path_parts_in_source_names(tmp_path, source):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"run": "t", "data": {"sources": [source]}}))
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.(models\.0|commit)' \(set in .*bad\.yaml\)"):
        load_config([ROOT / "params.yaml", p])


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (str(_Payload.marker),))


def test_a_planted_ranker_checkpoint_cannot_run_code(tmp_path):
    from llmblend.ranker.train import _load_checkpoint

    _Payload.marker = tmp_path / "code-ran"
    ckpt = tmp_path / "m.checkpoint.pt"
    ckpt.write_bytes(pickle.dumps({"key": "k", "x": _Payload()}))
    assert _load_checkpoint(ckpt, "k") is None  # unreadable as weights: training starts over
    assert not _Payload.marker.exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_artifacts_follow_the_umask(tmp_path, umask, mode):
    from llmblend.io import write_json, write_text

    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.txt", "x")
        write_json(tmp_path / "deep" / "b.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "deep" / "b.json").stat().st_mode & 0o777 == mode


def test_a_saved_ranker_folder_follows_the_umask(tmp_path):
    from llmblend.ranker.stage import save_dir_atomic

    class Saver:
        def save_pretrained(self, d, tokenizer):
            (Path(d) / "config.json").write_text("{}")

    old = os.umask(0o022)
    try:
        save_dir_atomic(Saver(), None, tmp_path / "model")
    finally:
        os.umask(old)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755
