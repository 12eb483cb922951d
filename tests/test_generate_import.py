"""The import backend: AlpacaEval model outputs and MixInstruct released candidates, with join reports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmblend.config import load_config
from llmblend.errors import LLMBlendError
from llmblend.generate.gather import gather_candidates
from llmblend.generate.shards import generate_shard
from llmblend.io import read_json, read_jsonl, write_jsonl

ROOT = Path(__file__).parents[1]
COMMIT = "c0ffee"
# the mirror the profiles read (LLMBLEND_MIRROR, as .ci/run sets it), else the checkout's neighbour
MIRROR = Path(os.environ.get("LLMBLEND_MIRROR") or ROOT.parent / "shared" / "mirror")


def split_records(prompts):
    return [{"id": f"ae/{i}", "instruction": p, "input": "", "output": "ref", "source": "ae", "candidates": []}
            for i, p in enumerate(prompts)]


def ae_config(models, mirror, shards=1):
    return {"run": "t", "seed": 1, "mirror": str(mirror),
            "data": {"sources": [{"type": "alpaca_eval", "name": "alpaca_eval", "commit": COMMIT, "models": models}]},
            "generate": {"shards": shards, "splits": ["test"], "generators": [
                {"name": m, "backend": "import", "import": {"source": "alpaca_eval", "model": m}} for m in models]}}


def write_outputs(mirror, model, rows):
    path = mirror / "alpaca_eval" / COMMIT / "results" / model / "model_outputs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")


def test_alpaca_eval_join_by_normalised_instruction_and_missing_answers(tmp_path):
    prompts = ["Name a color.", "What is  2+2?", "Say hi."]
    write_outputs(tmp_path, "m1", [{"instruction": "Name a color.", "output": "Blue.", "dataset": "x"},
                                   {"instruction": "What is 2+2? ", "output": "4", "dataset": "x"},  # spacing differs
                                   {"instruction": "Say hi.", "output": "Hi!", "dataset": "x"}])
    write_outputs(tmp_path, "m2", [{"instruction": "Say hi.", "output": "", "dataset": "x"},  # empty answer
                                   {"instruction": "Name a color.", "output": "Red.", "dataset": "x"}])  # one missing
    cfg = ae_config(["m1", "m2"], tmp_path, shards=2)
    write_jsonl(tmp_path / "splits" / "test.jsonl", split_records(prompts))
    for m in ("m1", "m2"):
        for k in range(2):
            generate_shard(cfg, m, tmp_path / "splits" / "test.jsonl", k, tmp_path / "gen" / m / "test" / f"shard-{k}.jsonl")
    gather_candidates(cfg, tmp_path / "splits", tmp_path / "gen", tmp_path / "cand")
    # as the workflow runs it: the command line, with only the keys rule generate_candidates declares
    # (an import generator reads no `models` entry and no thread count), the same shard
    from types import SimpleNamespace

    import yaml

    from llmblend.cli import main
    from llmblend.generate.rules import gen_cfg

    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    keys = ",".join(gen_cfg(cfg, SimpleNamespace(generator="m2")))
    rc = main(["generate-candidates", "--config", str(ROOT / "params.yaml"), "--config", str(tmp_path / "profile.yaml"),
               "--keys", keys, "--generator", "m2", "--split-file", str(tmp_path / "splits" / "test.jsonl"),
               "--shard", "0", "--out", str(tmp_path / "declared" / "shard-0.jsonl")])
    assert rc == 0
    assert ((tmp_path / "declared" / "shard-0.jsonl").read_bytes()
            == (tmp_path / "gen" / "m2" / "test" / "shard-0.jsonl").read_bytes())
    rows = read_jsonl(tmp_path / "cand" / "test.jsonl")
    assert [[c["text"] for c in r["candidates"]] for r in rows] == [["Blue.", "Red."], ["4", ""], ["Hi!", ""]]
    assert rows[1]["candidates"][1]["flags"] == ["missing"]  # kept in place, flagged
    assert rows[2]["candidates"][1]["flags"] == ["empty"]
    assert rows[0]["candidates"][0]["decoding_method"] == "released" and rows[0]["candidates"][0]["base_model"] == "m1"
    report = read_json(tmp_path / "cand" / "join_report.json")
    assert report["m1"]["test"] == {"joined": 3, "not_joined": 0, "failures": []}
    assert report["m2"]["test"]["not_joined"] == 1
    assert report["m2"]["test"]["failures"][0]["id"] == "ae/1"
    manifest = read_json(tmp_path / "cand" / "manifest.json")
    assert manifest["splits"]["test"]["generators"]["m2"]["flags"] == {"empty": 1, "missing": 1}


def test_alpaca_eval_model_not_in_mirror_is_an_error(tmp_path):
    cfg = ae_config(["absent"], tmp_path)
    write_jsonl(tmp_path / "test.jsonl", split_records(["a"]))
    with pytest.raises(LLMBlendError, match="not in the mirror"):
        generate_shard(cfg, "absent", tmp_path / "test.jsonl", 0, tmp_path / "o.jsonl")


def test_mixinstruct_import_keeps_released_scores(tmp_path):
    released = [
        {"id": "unified_chip2/1", "instruction": "Q one", "input": "", "output": "ref",
         "candidates": [{"decoding_method": "top_p_sampling", "model": "vicuna-13b-1.1", "text": "V1",
                         "scores": {"logprobs": -3.5, "bartscore": -3.1, "bleu": 12.0}},
                        {"decoding_method": "top_p_sampling", "model": "flan-t5-xxl", "text": "F1",
                         "scores": {"logprobs": -9.0, "bartscore": -4.0, "bleu": 1.0}}]},
        {"id": "dolly/2", "instruction": "Q two", "input": "ctx", "output": "ref",
         "candidates": [{"decoding_method": "top_p_sampling", "model": "flan-t5-xxl", "text": "F2",
                         "scores": {"bartscore": -4.2}}]},
    ]
    path = tmp_path / "mirror" / "mix-instruct" / "main" / "test_data_prepared.jsonl"
    write_jsonl(path, released)
    cfg = {"run": "t", "seed": 1, "mirror": str(tmp_path / "mirror"),
           "data": {"sources": [{"type": "mixinstruct", "name": "mixinstruct", "revision": "main",
                                 "files": {"test": {"file": "test_data_prepared.jsonl"}}}]},
           "generate": {"shards": 1, "splits": ["test"], "generators": [
               {"name": m, "backend": "import", "import": {"source": "mixinstruct", "model": m}}
               for m in ("vicuna-13b-1.1", "flan-t5-xxl")]}}
    # the split record of dolly/2 carries another id: it joins by instruction + input
    split = [{"id": "unified_chip2/1", "instruction": "Q one", "input": "", "output": "ref", "source": "m", "candidates": []},
             {"id": "renamed/2", "instruction": "Q  two", "input": "ctx", "output": "ref", "source": "m", "candidates": []}]
    write_jsonl(tmp_path / "splits" / "test.jsonl", split)
    for m in ("vicuna-13b-1.1", "flan-t5-xxl"):
        generate_shard(cfg, m, tmp_path / "splits" / "test.jsonl", 0, tmp_path / "gen" / m / "test" / "shard-0.jsonl")
    gather_candidates(cfg, tmp_path / "splits", tmp_path / "gen", tmp_path / "cand")
    rows = read_jsonl(tmp_path / "cand" / "test.jsonl")
    v, f = rows[0]["candidates"]
    assert v["text"] == "V1" and v["scores"]["bartscore"] == -3.1 and v["logprobs"] == -3.5
    assert v["decoding_method"] == "top_p_sampling" and f["text"] == "F1"
    v2, f2 = rows[1]["candidates"]
    assert v2["flags"] == ["missing"] and f2["text"] == "F2" and f2["logprobs"] is None
    report = read_json(tmp_path / "cand" / "join_report.json")
    assert report["vicuna-13b-1.1"]["test"]["not_joined"] == 1 and report["flan-t5-xxl"]["test"]["not_joined"] == 0


@pytest.mark.skipif(not (MIRROR / "alpaca_eval").is_dir(), reason="the shared AlpacaEval mirror is not here")
def test_alpaca_eval_profile_all_12_models_from_the_mirror(tmp_path, monkeypatch):
    """The real mirror: the alpaca_eval profile's splits, then its 12 import generators and the join report."""
    from llmblend.data.prepare import prepare_splits

    monkeypatch.setenv("LLMBLEND_MIRROR", str(MIRROR))
    monkeypatch.chdir(tmp_path)
    cfg = load_config([ROOT / "params.yaml", ROOT / "config" / "alpaca_eval.yaml"])
    prepare_splits(cfg, tmp_path / "splits")
    gens = [g["name"] for g in cfg["generate"]["generators"]]
    assert len(gens) == 12
    for split in cfg["generate"]["splits"]:
        for g in gens:
            generate_shard(cfg, g, tmp_path / "splits" / f"{split}.jsonl", 0,
                           tmp_path / "gen" / g / split / "shard-0.jsonl")
    gather_candidates(cfg, tmp_path / "splits", tmp_path / "gen", tmp_path / "cand")
    total = 0
    for split in cfg["generate"]["splits"]:
        rows = read_jsonl(tmp_path / "cand" / f"{split}.jsonl")
        total += len(rows)
        assert all([c["model"] for c in r["candidates"]] == gens for r in rows)
    report = read_json(tmp_path / "cand" / "join_report.json")
    not_joined = {g: sum(s["not_joined"] for s in report[g].values()) for g in gens}
    # two models answered 803 of the 805 prompts; everything else joins
    assert sorted(v for v in not_joined.values() if v) == [2, 2]
    assert sum(not_joined.values()) == 4 and total >= 800


# ---------------------------------------------------------------- the ranker's training pool


def pool_config(ranked, pool, mirror):
    cfg = ae_config(ranked, mirror)
    cfg["ranker"] = {"train_generators": pool}
    return cfg


def test_ranker_pool_takes_the_named_models_and_counts_what_it_leaves_out(tmp_path):
    from llmblend.ranker.pool import build_pool

    prompts = ["Name a color.", "What is 2+2?", "Say hi."]
    write_outputs(tmp_path, "m1", [{"instruction": p, "output": f"m1 says {k}", "dataset": "x"}
                                   for k, p in enumerate(prompts)])
    write_outputs(tmp_path, "extra", [{"instruction": "Name a color.", "output": "Green.", "dataset": "x"},
                                      {"instruction": "Say hi.", "output": " ", "dataset": "x"}])  # 1 missing, 1 empty
    write_outputs(tmp_path, "other", [{"instruction": p, "output": "x", "dataset": "x"} for p in prompts])
    # the profile ranks m1 and other; the pool is m1 and a model the profile never ranks
    cfg = pool_config(["m1", "other"], ["m1", "extra"], tmp_path)
    write_jsonl(tmp_path / "train.jsonl", split_records(prompts))
    report = build_pool(cfg, "train", tmp_path / "train.jsonl", tmp_path / "pool.jsonl", tmp_path / "r.json")
    rows = read_jsonl(tmp_path / "pool.jsonl")
    # only the first prompt has two answers: the others teach nothing and are dropped, counted
    assert [r["id"] for r in rows] == ["ae/0"]
    assert [(c["model"], c["text"]) for c in rows[0]["candidates"]] == [("m1", "m1 says 0"), ("extra", "Green.")]
    assert rows[0]["instruction"] == "Name a color."
    assert report["missing_answers"] == {"extra": 1} and report["empty_answers"] == {"extra": 1}
    assert report["dropped_fewer_than_2_answers"] == 2 and report["records_out"] == 1
    assert read_json(tmp_path / "r.json") == report


def test_ranker_pool_needs_one_released_source_and_a_judge_signal(tmp_path):
    from llmblend.config import validate
    from llmblend.errors import ConfigError
    from llmblend.ranker.pool import pool_generators

    cfg = pool_config(["m1"], ["m1"], tmp_path)
    cfg["data"]["sources"] = [{"type": "demo", "name": "demo"}]
    with pytest.raises(ConfigError, match="ranker.train_generators"):
        pool_generators(cfg)
    full = load_config([ROOT / "params.yaml", ROOT / "config" / "alpaca_eval.yaml"])
    assert full["ranker"]["train_generators"] and full["ranker"]["signal"]["type"] == "judge"
    full["ranker"]["signal"] = {"type": "metrics", "weights": [{"metric": "bleu", "weight": 1.0}]}
    with pytest.raises(ConfigError, match="ranker.signal.type"):
        validate({k: v for k, v in full.items() if k != "_files"})


def test_a_pool_profile_trains_on_the_pool_and_ranks_the_profiles_models_at_test():
    """The rules' wiring: with ranker.train_generators the trainings read the pool and its labels, the
    pool reads only its own settings, and the test rankings still read the profile's candidates."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc" / "alpaca_eval" / "dvc.yaml").read_text())["stages"]
    train = stages["train_ranker_pairranker"]
    assert "data/alpaca_eval/ranker_pool/train.jsonl" in train["deps"]
    assert "data/alpaca_eval/ranker_pool/judge/val.jsonl" in train["deps"]
    assert not any(d.startswith("data/alpaca_eval/candidates/") for d in train["deps"])
    pool = [n for n in stages if n.startswith("import_ranker_pool")]
    assert sorted(pool) == ["import_ranker_pool_train", "import_ranker_pool_val"]
    assert any("ranker.train_generators" in str(p) for p in stages["import_ranker_pool_train"]["params"])
    assert any("ranker.train_generators" in str(p) for p in train["params"])
    assert "data/alpaca_eval/scored/test.jsonl" in stages["rank_test_full"]["deps"]
