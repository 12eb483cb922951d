"""The data stage: adapters, filters, splitter, manifest, and bad input handled cleanly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmblend.config import load_config
from llmblend.data.prepare import prepare_splits
from llmblend.data.split import split_records
from llmblend.errors import ConfigError, InputError, LLMBlendError

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "c0ffee0000000000000000000000000000000000"


def write_cfg(tmp_path, data: dict, run="t", extra=None) -> list[str]:
    over = {"run": run, "data": data, **(extra or {})}
    p = tmp_path / "profile.yaml"
    p.write_text(yaml.safe_dump(over), encoding="utf-8")
    return [str(ROOT / "params.yaml"), str(p)]


def jsonl_source(tmp_path, rows, name="src.jsonl", raw=None):
    p = tmp_path / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def rec(i, **kw):
    r = {"id": f"x/{i}", "instruction": f"Say {i}.", "input": "", "output": f"{i}"}
    r.update(kw)
    return r


def cfg_for(tmp_path, path, sizes=None, filters=None):
    data = {"sources": [{"type": "jsonl", "name": "local", "path": str(path)}],
            "split": {"mode": "shuffle", "sizes": sizes or {"val": 2, "test": 2, "train": "rest"}}}
    if filters:
        data["filters"] = filters
    return load_config(write_cfg(tmp_path, data))


def test_split_sizes_rest_and_order_independence():
    recs = [{"id": f"r{i}"} for i in range(20)]
    a, unused = split_records(recs, {"val": 3, "test": 5, "train": "rest"}, seed=1)
    b, _ = split_records(list(reversed(recs)), {"val": 3, "test": 5, "train": "rest"}, seed=1)
    assert [len(a[k]) for k in ("train", "val", "test")] == [12, 3, 5] and unused == 0
    assert a == b
    ids = [r["id"] for s in a.values() for r in s]
    assert len(set(ids)) == 20
    c, unused = split_records(recs, {"val": 3, "test": 5, "train": 4}, seed=1)
    assert unused == 8


def test_split_follows_the_seed():
    """One seeded shuffle of the records sorted by id, cut val, test, train: with seed 42 the very
    draw of the reference's `random.seed(42); random.shuffle(...)`; another seed, another split."""
    import random

    recs = [{"id": f"r{i:02d}"} for i in range(30)]
    sizes = {"val": 5, "test": 5, "train": "rest"}

    def ids(seed):
        return {k: [r["id"] for r in v] for k, v in split_records(list(reversed(recs)), sizes, seed)[0].items()}

    order = sorted(r["id"] for r in recs)
    random.seed(42)
    random.shuffle(order)
    assert ids(42) == {"train": order[10:], "val": order[:5], "test": order[5:10]}
    assert ids(7) != ids(42) and ids(7) == ids(7)


def test_split_asks_for_too_many():
    with pytest.raises(ConfigError, match="only 3 remain"):
        split_records([{"id": str(i)} for i in range(3)], {"val": 2, "test": 2}, seed=0)


def test_prepare_writes_splits_and_manifest_with_drop_counts(tmp_path):
    rows = [rec(i) for i in range(12)] + [rec(99, instruction="Say 1.", output="dup")]  # content duplicate of x/1
    rows.append(rec(100, output=" ".join(["w"] * 50)))  # too long for the filter below
    cfg = cfg_for(tmp_path, jsonl_source(tmp_path, rows), filters={"max_output_len": 20})
    m = prepare_splits(cfg, tmp_path / "out")
    assert m["dropped"] == {"duplicate_content": 1, "output_too_long": 1}
    assert m["kept_after_filters"] == 12
    assert {k: v["records"] for k, v in m["splits"].items()} == {"train": 8, "val": 2, "test": 2}
    for name in ("train", "val", "test"):
        lines = (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()
        assert all(json.loads(l)["candidates"] == [] for l in lines)


@pytest.mark.parametrize("rows,raw,field,problem", [
    ([{"id": "a", "instruction": "x", "input": ""}], None, "output", "missing"),
    ([rec(1, instruction="", input="  ")], None, "instruction", "empty"),
    ([rec(1), rec(1)], None, "id", "duplicated id"),
    ([rec(1, output=3)], None, "output", "expected string"),
    (None, b'{"id": "a", "instruction": "x"\n', None, "malformed JSON"),
    (None, b'{"id": "a", "instruction": "\xff", "input": "", "output": "y"}\n', None, "not valid UTF-8"),
])
def test_bad_input_names_file_line_field_and_leaves_no_output(tmp_path, rows, raw, field, problem):
    path = jsonl_source(tmp_path, rows, raw=raw)
    cfg = cfg_for(tmp_path, path, sizes={"val": 0, "test": 0, "train": "rest"})
    with pytest.raises(InputError) as e:
        prepare_splits(cfg, tmp_path / "out")
    msg = str(e.value)
    assert str(path) in msg and problem in msg
    if field:
        assert f"field '{field}'" in msg
    assert ":" in msg.split(str(path))[1][:3] or raw is None  # line number follows the path
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_exits_nonzero_with_one_line_error(tmp_path):
    path = jsonl_source(tmp_path, None, raw=b'{"broken\n')
    files = write_cfg(tmp_path, {"sources": [{"type": "jsonl", "path": str(path)}],
                                 "split": {"sizes": {"val": 0, "test": 0, "train": "rest"}}})
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "llmblend.cli", "prepare-data", *sum((["--config", f] for f in files), []),
                        "--out-dir", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert f"{path}:1" in r.stderr and "malformed JSON" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def make_mirror(tmp_path, models=("m1", "m2")):
    rows = [{"instruction": "Name a colour.", "dataset": "koala", "output_1": "Blue."},
            {"instruction": "Add 2 and 2.", "dataset": "vicuna", "output_1": "4"}]
    for m in models:
        d = tmp_path / "mirror" / "alpaca_eval" / COMMIT / "results" / m / "alpaca_eval_gpt4"
        d.mkdir(parents=True)
        ann = [dict(r, instruction=r["instruction"] + ("  " if m == "m2" else ""), output_2=f"{m} says",
                    generator_1="text_davinci_003", generator_2=m, preference=2) for r in rows]
        (d / "annotations.json").write_text(json.dumps(ann))
    return tmp_path / "mirror"


def test_alpaca_eval_adapter_reads_mirror_and_joins_whitespace(tmp_path):
    mirror = make_mirror(tmp_path)
    data = {"sources": [{"type": "alpaca_eval", "commit": COMMIT, "models": ["m1", "m2"]}],
            "split": {"sizes": {"val": 0, "test": 1, "train": "rest"}}}
    cfg = load_config(write_cfg(tmp_path, data, extra={"mirror": str(mirror)}))
    m = prepare_splits(cfg, tmp_path / "out")
    assert m["kept_after_filters"] == 2 and m["read_per_source"] == {"alpaca_eval": 2}
    recs = [json.loads(l) for f in ("train", "test") for l in (tmp_path / "out" / f"{f}.jsonl").read_text().splitlines()]
    assert {r["output"] for r in recs} == {"Blue.", "4"}
    assert all(r["id"].startswith("alpaca_eval/") for r in recs)


def test_alpaca_eval_missing_from_mirror_names_url_and_path(tmp_path):
    mirror = make_mirror(tmp_path, models=("m1",))
    data = {"sources": [{"type": "alpaca_eval", "commit": COMMIT, "models": ["m1", "absent"]}],
            "split": {"sizes": {"val": 0, "test": 0, "train": "rest"}}}
    cfg = load_config(write_cfg(tmp_path, data, extra={"mirror": str(mirror)}))
    with pytest.raises(LLMBlendError, match=r"raw\.githubusercontent\.com/tatsu-lab/alpaca_eval/.*absent.*tried .*mirror"):
        prepare_splits(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_mixinstruct_adapter_keeps_released_splits(tmp_path):
    rev = "abc123"
    d = tmp_path / "mirror" / "mix-instruct" / rev
    d.mkdir(parents=True)
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        rows = [{"id": f"dolly_15k/qa/{split}{i}", "instruction": "Q?", "input": f"{split}{i}", "output": "A.",
                 "candidates": [{"model": "vicuna", "text": "A", "scores": {"bleu": 1.0}}]} for i in range(n)]
        (d / f"{split}_data_prepared.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {"sources": [{"type": "mixinstruct", "revision": rev,
                         "files": {s: {"file": f"{s}_data_prepared.jsonl"} for s in ("train", "val", "test")}}],
            "split": {"mode": "released"}}
    cfg = load_config(write_cfg(tmp_path, data, extra={"mirror": str(tmp_path / "mirror")}))
    m = prepare_splits(cfg, tmp_path / "out")
    assert {k: v["records"] for k, v in m["splits"].items()} == {"train": 3, "val": 1, "test": 2}
    assert m["splits"]["test"]["per_source"] == {"mixinstruct/dolly_15k": 2}


def test_mixinstruct_checksum_mismatch_is_an_error(tmp_path):
    rev = "abc123"
    d = tmp_path / "mirror" / "mix-instruct" / rev
    d.mkdir(parents=True)
    (d / "test_data_prepared.jsonl").write_text(json.dumps(rec(1)) + "\n")
    data = {"sources": [{"type": "mixinstruct", "revision": rev,
                         "files": {"test": {"file": "test_data_prepared.jsonl", "sha256": "0" * 64}}}],
            "split": {"mode": "released"}}
    cfg = load_config(write_cfg(tmp_path, data, extra={"mirror": str(tmp_path / "mirror")}))
    with pytest.raises(LLMBlendError, match="differs from the pinned"):
        prepare_splits(cfg, tmp_path / "out")


def test_paper_adapters_on_local_copies(tmp_path):
    alp = tmp_path / "alpaca_gpt4.json"
    alp.write_text(json.dumps([{"instruction": "Give a tip.", "input": "", "output": "Sleep well at night, every night."}]))
    share = tmp_path / "sharegpt.json"
    share.write_text(json.dumps([
        {"id": "c1", "conversations": [{"from": "human", "value": "Explain rain."},
                                       {"from": "gpt", "value": "Rain is water falling from clouds."}]},
        {"id": "c2", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "I'm sorry, I can't."}]},
    ]))
    gpt4all = tmp_path / "gpt4all.jsonl"
    gpt4all.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "What is tea?", "response": "A drink made from leaves.", "source": "unified_chip2"},
        {"prompt": "Code?", "response": "print()", "source": "stackoverflow"}]))
    dolly = tmp_path / "dolly.jsonl"
    dolly.write_text(json.dumps({"instruction": "Who wrote Hamlet?", "input": "", "output": "Shakespeare wrote it.",
                                 "category": "open_qa"}) + "\n")
    data = {"sources": [{"type": "alpaca_gpt4", "path": str(alp)}, {"type": "sharegpt", "path": str(share)},
                        {"type": "gpt4all", "path": str(gpt4all)}, {"type": "dolly", "path": str(dolly)}],
            "split": {"sizes": {"val": 0, "test": 0, "train": "rest"}}}
    cfg = load_config(write_cfg(tmp_path, data))
    m = prepare_splits(cfg, tmp_path / "out")
    assert m["kept_after_filters"] == 4
    assert m["dropped"] == {"gpt4all_other_source": 1, "sharegpt_ban_word": 1}
    srcs = sorted(m["splits"]["train"]["per_source"])
    assert srcs == ["alpaca_gpt4", "dolly", "gpt4all", "sharegpt"]


def test_unreachable_hub_source_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = {"sources": [{"type": "dolly", "hub_id": "nobody/not-a-dataset-xyz"}], "split": {"sizes": {"val": 0, "test": 0, "train": "rest"}}}
    cfg = load_config(write_cfg(tmp_path, data))
    with pytest.raises(LLMBlendError, match="nobody/not-a-dataset-xyz cannot be loaded"):
        prepare_splits(cfg, tmp_path / "out")


def test_atomic_write_removes_temporaries_left_by_a_killed_writer(tmp_path):
    from llmblend.io import write_jsonl

    target = tmp_path / "out.jsonl"
    stale = tmp_path / ".out.jsonl.abc123.tmp"
    stale.write_text("half")
    other = tmp_path / ".other.jsonl.abc123.tmp"
    other.write_text("not ours")
    write_jsonl(target, [{"a": 1}])
    assert target.read_text() == '{"a":1}\n'
    assert not stale.exists() and other.exists()
