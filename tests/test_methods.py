"""One place for each fact: the method table (llmblend.ranker.methods), read alike by the rules, the
stage, the cost plan and Blender, and the key of a killed training's resume state."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch

from llmblend.config import load_config
from llmblend.errors import ConfigError
from llmblend.ranker.methods import METHODS, method, passes_per_prompt
from llmblend.workflow import cost

from test_ranker import tiny_backbone, tiny_cfg, write_split  # noqa: F401 (a fixture)
from workflow_utils import ROOT, env


def test_parsing_the_snakefile_imports_no_torch():
    """The rule files and their helpers read the method table, not the stage: planning a profile's DAG
    (as `snakemake -n`, `llmblend export-dvc` and `plan-cost` do) loads no torch."""
    code = ("import sys\n"
            "from llmblend.ranker import rules\n"
            "from llmblend.workflow.dvcgen import dag_jobs\n"
            "jobs = dag_jobs(['params.yaml'])\n"
            "assert any(j['rule'] == 'rank_candidates' for j in jobs)\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["False", "False"]


def test_the_cost_plan_counts_the_passes_the_stage_writes(tiny_backbone, tmp_path):  # noqa: F811
    """Each method's forward passes per prompt in the cost plan are the n_forward the stage writes
    (bubble and the select schedules: at most the method table's; their jobs run none when the workflow
    plays them on rank_test_full's matrices)."""
    from llmblend.ranker.model import build_ranker
    from llmblend.ranker.rules import plays_on_matrices
    from llmblend.ranker.stage import rank_split

    plan_cfg = load_config([str(ROOT / "params.yaml")])
    n, items = cost.candidates_per_item(plan_cfg), cost.split_items(plan_cfg)["test"]
    te = write_split(tmp_path / "test.jsonl", 3, cands=n)
    models = {}
    for kind in ("pairranker", "simcls", "summareranker"):
        torch.manual_seed(0)
        model, tok = build_ranker(kind, tiny_backbone, "test")
        model.save_pretrained(tmp_path / kind, tok)
        models[kind] = tmp_path / kind
    cfg = tiny_cfg()
    cfg["ranker"]["select"] = plan_cfg["ranker"]["select"] = {"opponents": 1, "refine_top": 2}
    names = [m for m, row in METHODS.items() if row.reads is None] + ["oracle-bleu"]
    rank_split(cfg, names, te, tmp_path / "out", "test", models)
    for m in names:
        written = [json.loads(x)["n_forward"] for x in (tmp_path / "out" / m / "test.jsonl").read_text().splitlines()]
        planned = cost.job_units(plan_cfg, "rank_candidates", {"split": "test", "method": m}) / items
        if method(m).kind in ("bubble", "select"):
            assert max(written) <= method(m).passes(n, plan_cfg["ranker"]), m
            assert planned == (0 if plays_on_matrices(m, plan_cfg["ranker"]["methods"]) else
                               method(m).passes(n, plan_cfg["ranker"])), m
            # the default profile keeps the full matrices (pairranker is a method): those jobs run no model
            assert "pairranker" in plan_cfg["ranker"]["methods"] and planned == 0, m
        else:
            assert written == [planned] * 3, m


def test_two_aggregations_of_one_matrix_are_priced_once():
    assert passes_per_prompt(["pairranker", "pairranker-maxwins"], 12, {}) == 132
    assert passes_per_prompt(["pairranker", "pairranker-bubble"], 12, {}) == 132 + 22


def test_an_unknown_method_is_refused_naming_its_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ranker:\n  methods: [pairranker, pairranker-maxloss]\n")
    with pytest.raises(ConfigError, match=r"ranker.methods.1.*bad.yaml.*unknown method 'pairranker-maxloss'"):
        load_config([str(ROOT / "params.yaml"), str(bad)])


@pytest.fixture
def train_key(tiny_backbone, tmp_path, monkeypatch):  # noqa: F811
    """key(cfg, kind): the checkpoint key train_ranker trains under (the loop itself stubbed out)."""
    from llmblend.ranker import stage, train as train_mod

    seen = []

    def fake_train(model, tokenizer, train_ex, val_ex, tcfg, seed, checkpoint=None, key=None):
        seen.append(key)
        return model, [{"epoch": 1, "loss": 0.0, "val_score": 0.0}]

    monkeypatch.setattr(train_mod, "train", fake_train)
    tr, va = write_split(tmp_path / "train.jsonl", 4), write_split(tmp_path / "val.jsonl", 2, start=100)

    def key(cfg, kind="pairranker"):
        stage.train_ranker(cfg, kind, tr, va, tiny_backbone, tmp_path / "m", tmp_path / "c.csv")
        return seen[-1]
    return key


@pytest.fixture
def base_cfg():
    cfg = tiny_cfg()
    cfg["ranker"]["methods"] = ["pairranker", "simcls"]
    return cfg


def _with(cfg, dotted, value):
    cfg = copy.deepcopy(cfg)
    *up, last = dotted.split(".")
    node = cfg
    for k in up:
        node = node.setdefault(k, {})
    node[last] = value
    return cfg


def test_a_new_ranking_method_keeps_the_training_checkpoint(train_key, base_cfg):
    """Another method in ranker.methods reranks and retrains nothing (rule train_ranker does not read the
    list), so a killed training's resume state stays usable; so does a new checkpoint interval."""
    before = train_key(base_cfg)
    more = _with(base_cfg, "ranker.methods", base_cfg["ranker"]["methods"] + ["pairranker-knockout"])
    assert train_key(more) == before
    assert train_key(_with(more, "ranker.checkpoint_seconds", 5)) == before


@pytest.mark.parametrize("dotted,value", [("ranker.train.lr", 5e-4), ("ranker.pairs_per_input", 3),
                                          ("ranker.dropout", 0.2), ("seed", 8)])
def test_a_training_setting_changes_the_training_checkpoint(train_key, base_cfg, dotted, value):
    assert train_key(_with(base_cfg, dotted, value)) != train_key(base_cfg)


def test_a_baseline_setting_changes_that_baseline_checkpoint_only(train_key, base_cfg):
    tuned = _with(base_cfg, "ranker.baseline_train", {"simcls": {"lr": 1e-4}})
    assert train_key(tuned, "simcls") != train_key(base_cfg, "simcls")
    assert train_key(tuned) == train_key(base_cfg)
