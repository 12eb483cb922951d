"""The openai judge against the loopback server: cache, faults, cost cap, kill/resume, Batch API."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmblend.errors import LLMBlendError
from llmblend.judge import batch
from llmblend.judge.backends import BudgetExhausted
from llmblend.judge.cache import LabelCache
from llmblend.judge.labels import LABELS
from llmblend.judge.run import judge_split

KEY = "sk-test-SECRET-0123456789"
MODELS = ["m0", "m1", "m2", "m3"]
N_EXAMPLES = 3
N_PAIRS = N_EXAMPLES * 6

_CAND = re.compile(r"Candidate A:\n(.*?)\n\nCandidate B:\n(.*?)\n\n", re.S)


def fair_judge(req):
    """Prefers the candidate with the higher quality tag "q<d>", whatever the order shown."""
    a, b = _CAND.search(req["messages"][-1]["content"]).groups()
    qa, qb = int(re.search(r"q(\d)", a).group(1)), int(re.search(r"q(\d)", b).group(1))
    return "A is better" if qa > qb else "B is better" if qb > qa else "Same good"


@pytest.fixture
def setup(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    fake_openai.reply_fn = fair_judge
    cands = tmp_path / "candidates.jsonl"
    with open(cands, "w") as f:
        for i in range(N_EXAMPLES):
            rec = {"id": f"ex{i}", "instruction": f"Say something {i}", "input": "", "output": "ref",
                   "candidates": [{"model": m, "text": f"answer {i} from {m} q{(k * 7 + i) % 4}"}
                                  for k, m in enumerate(MODELS)]}
            f.write(json.dumps(rec) + "\n")

    def cfg(**judge_over):
        openai_over = judge_over.pop("openai", {})
        return {"run": "t", "seed": 7, "data": {"sources": [{"type": "demo", "name": "demo", "n_items": 10}], "split": {"mode": "shuffle"}},
                "judge": {"backend": "openai", "splits": ["test"], "pairs": "all", "both_orders": False, "max_usd": 10.0,
                          **judge_over,
                          "openai": {"model": "judge-1", "base_url": fake_openai.base_url, "backoff_s": 0.01,
                                     "max_backoff_s": 0.05, "timeout_s": 2.0, "max_attempts": 4, "concurrency": 2,
                                     **openai_over}}}

    paths = {"candidates": cands, "out": tmp_path / "judge" / "test.jsonl", "metrics": tmp_path / "metrics.json",
             "cache": tmp_path / "cache" / "test.sqlite"}
    return cfg, paths, fake_openai


def run(cfg, p, **kw):
    return judge_split(cfg, p["candidates"], p["out"], p["metrics"], p["cache"], **kw)


def labels_of(path):
    return [json.loads(line) for line in open(path)]


def test_labels_metadata_and_rerun_makes_zero_calls(setup):
    cfg, p, fake = setup
    m = run(cfg(), p)
    assert fake.count() == N_PAIRS and m["calls"] == N_PAIRS and m["pairs_labelled"] == N_PAIRS
    recs = labels_of(p["out"])
    assert all(lab in LABELS for r in recs for lab in r["cmp_results"].values())
    assert recs[0]["judge"] == {"backend": "openai", "model": "judge-1", "temperature": 0.0,
                                "prompt_version": "pairwise-v1", "pairs": "all", "both_orders": False}
    assert m["spent_usd"] > 0 and m["estimate_usd"] >= m["spent_usd"]
    first = p["out"].read_bytes()
    m2 = run(cfg(), p)
    assert fake.count() == N_PAIRS, "a rerun must make zero calls"
    assert m2["calls"] == 0 and m2["cache_hits"] == N_PAIRS and m2["spent_usd"] == 0
    assert p["out"].read_bytes() == first


def test_429_storm_is_survived(setup):
    cfg, p, fake = setup
    fake.queue_fault("429", times=25, retry_after=0.01)
    m = run(cfg(openai={"max_attempts": 30}), p)
    assert m["labels"]["error"] == 0 and m["pairs_labelled"] == N_PAIRS
    assert m["backend_stats"]["http_429"] == 25 and fake.count() == N_PAIRS + 25


def test_every_fault_kind_is_retried(setup):
    cfg, p, fake = setup
    fake.queue_fault("500")
    fake.queue_fault("hang")  # no reply until the client gives up
    fake.queue_fault("truncated")
    fake.queue_fault("reset")
    # a generous timeout: only the hang times out, even on a loaded machine
    m = run(cfg(openai={"concurrency": 1, "timeout_s": 2.0, "max_attempts": 6}), p)
    s = m["backend_stats"]
    assert (s["http_500"], s["timeout"], s["bad_response"], s["connection_error"]) == (1, 1, 1, 1)
    assert m["labels"]["error"] == 0 and m["pairs_labelled"] == N_PAIRS


def test_exhausted_retries_are_cached_errors_never_ties(setup):
    cfg, p, fake = setup
    fake.queue_fault("500", times=3)
    m = run(cfg(openai={"concurrency": 1, "max_attempts": 3}), p)
    assert m["labels"]["error"] == 1
    recs = labels_of(p["out"])
    (key, reason), = [kv for r in recs for kv in r.get("errors", {}).items()]
    assert "HTTP 500" in reason and "after 3 attempts" in reason
    calls = fake.count()
    run(cfg(), p)
    assert fake.count() == calls  # the error is cached: no silent re-pay
    m3 = run(cfg(retry_errors=True), p)
    assert fake.count() == calls + 1 and m3["labels"]["error"] == 0


def test_unparsable_reply(setup):
    cfg, p, fake = setup
    fake.reply_fn = lambda req: "I cannot judge this."
    m = run(cfg(openai={"max_attempts": 2}), p)
    assert m["labels"]["unparsable"] == N_PAIRS and fake.count() == 2 * N_PAIRS


def test_cost_cap_refuses_and_stops(setup):
    cfg, p, fake = setup
    with pytest.raises(LLMBlendError, match="above the cap"):
        run(cfg(max_usd=1e-6), p)
    assert fake.count() == 0 and not p["out"].exists()
    # one call costs ~100 prompt tokens at 0.5 USD/1M: the cap allows about 3 calls
    cap = 3 * 100 * 0.5e-6
    with pytest.raises(BudgetExhausted, match="raise judge.max_usd"):
        run(cfg(max_usd=cap), p, allow_over_budget=True)
    assert not p["out"].exists(), "no partial output"
    cached = len(LabelCache(p["cache"]))
    assert 1 <= cached < N_PAIRS and fake.count() <= cached + 2
    before = fake.count()
    m = run(cfg(max_usd=10.0), p)
    assert fake.count() - before == N_PAIRS - cached and m["pairs_labelled"] == N_PAIRS


def test_both_orders_flags_position_bias(setup):
    cfg, p, fake = setup
    m = run(cfg(both_orders=True), p)
    assert fake.count() == 2 * N_PAIRS and m["order_agreement"]["rate"] == 1.0
    fake.reply_fn = lambda req: "A is better"  # always prefers the first shown
    p["cache"].unlink()
    m = run(cfg(both_orders=True), p)
    assert m["labels"]["inconsistent"] == N_PAIRS and m["order_agreement"]["rate"] == 0.0


def test_key_never_written_and_refused_key_stops(setup):
    cfg, p, fake = setup
    run(cfg(), p)
    for f in (p["out"], p["metrics"], p["cache"]):
        assert KEY.encode() not in Path(f).read_bytes()


@pytest.mark.parametrize("status", ["401", "403"])
def test_a_refused_key_stops_the_judge_at_once(setup, status):
    """A refused key is final: no retry, no further pair asked, a one-line error, no output."""
    cfg, p, fake = setup
    fake.queue_fault(status, times=N_PAIRS)
    with pytest.raises(LLMBlendError, match=rf"refused the API key \(HTTP {status}\); nothing more is asked"):
        run(cfg(openai={"concurrency": 2, "max_attempts": 4}), p)
    assert 1 <= fake.count() <= 2  # the calls already in flight (concurrency 2), none after
    assert not p["out"].exists() and not p["metrics"].exists()


def write_config(path, cfg):
    cfg = json.loads(json.dumps(cfg))
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_killed_run_resumes_without_duplicates(setup, tmp_path):
    cfg, p, fake = setup

    def slow_fair(req):
        time.sleep(0.15)
        return fair_judge(req)

    fake.reply_fn = slow_fair
    conf = write_config(tmp_path / "conf.yaml", cfg())
    cmd = [sys.executable, "-m", "llmblend.cli", "judge-pairs", "--config", str(conf), "--split", "test",
           "--candidates", str(p["candidates"]), "--out", str(p["out"]), "--metrics", str(p["metrics"]),
           "--cache", str(p["cache"])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.time() + 60
    while fake.count() < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1].decode()[-600:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not p["out"].exists()
    cached = len(LabelCache(p["cache"]))
    asked_first = fake.count()
    assert 1 <= cached < N_PAIRS
    fake.reply_fn = fair_judge
    m = run(cfg(), p)
    # only the pairs without a cached label are asked again (at most the calls in flight at the kill are repeated)
    assert m["calls"] == N_PAIRS - cached and m["cache_hits"] == cached
    assert asked_first - cached <= 2
    assert sum(len(r["cmp_results"]) for r in labels_of(p["out"])) == N_PAIRS


def test_batch_round_trip_survives_restart(setup, tmp_path):
    cfg, p, fake = setup
    fake.batch_polls = 2
    c, bdir = cfg(), tmp_path / "batch"
    st = batch.prepare(c, p["candidates"], bdir, p["cache"])
    assert st["parts"][0]["n"] == N_PAIRS
    with pytest.raises(LLMBlendError, match="already prepared"):
        batch.prepare(c, p["candidates"], bdir, p["cache"])
    batch.submit(c, bdir, p["cache"])
    batch.submit(c, bdir, p["cache"])  # a restart: nothing is uploaded or created twice
    assert fake.count("/v1/files", "POST") == 1 and fake.count("/v1/batches", "POST") == 1
    assert batch.poll(c, bdir, p["cache"])["parts"][0]["status"] == "in_progress"
    assert batch.poll(c, bdir, p["cache"])["parts"][0]["status"] == "completed"
    st = batch.ingest(c, bdir, p["cache"])
    assert st["status"] == "ingested" and st["ingested"]["labels"] == N_PAIRS
    m = run(c, p)
    assert fake.count("/chat/completions") == 0 and m["calls"] == 0 and m["pairs_labelled"] == N_PAIRS
    # same labels as the online path would give
    online = tmp_path / "online.sqlite"
    judge_split(c, p["candidates"], tmp_path / "online.jsonl", tmp_path / "om.json", online)
    assert labels_of(tmp_path / "online.jsonl") == labels_of(p["out"])


def _writer(path, start):
    cache = LabelCache(path)
    for i in range(start, start + 150):
        cache.put(f"k{i}", label="Same good", usd=0.0)


def test_cache_safe_under_concurrent_processes(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "c.sqlite"
    LabelCache(path).close()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, k * 150)) for k in range(3)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    assert len(LabelCache(path)) == 450


def test_fused_answers_with_the_openai_judge(setup, tmp_path):
    from llmblend.judge.run import judge_fused

    cfg, p, fake = setup
    fused = tmp_path / "fused.jsonl"
    fused.write_text("".join(json.dumps({"id": f"ex{i}", "candidates": [{"model": "llm-blender", "text": "fused q9"}]})
                             + "\n" for i in range(N_EXAMPLES)))
    m = judge_fused(cfg(), fused, p["candidates"], tmp_path / "fused_test.jsonl", tmp_path / "fm.json",
                    tmp_path / "fc.sqlite")
    recs = labels_of(tmp_path / "fused_test.jsonl")
    assert fake.count() == N_EXAMPLES * len(MODELS) and m["pairs_labelled"] == N_EXAMPLES * len(MODELS)
    from llmblend.judge.gpt_rank import beats_or_ties

    assert all(beats_or_ties(r["cmp_results"], "llm-blender", m_, "issue6") == 1.0 for r in recs for m_ in MODELS)


def test_knockout_schedule_asks_n_minus_1_pairs_and_finds_the_best(setup):
    from llmblend.judge.gpt_rank import gpt_ranks

    cfg, p, fake = setup
    m = run(cfg(pairs="knockout"), p)
    assert fake.count() == N_EXAMPLES * (len(MODELS) - 1) and m["pairs_labelled"] == N_EXAMPLES * 3
    for i, rec in enumerate(labels_of(p["out"])):
        quality = {mod: (k * 7 + i) % 4 for k, mod in enumerate(MODELS)}
        best = max(quality, key=quality.get)
        assert gpt_ranks(rec["cmp_results"], MODELS)[MODELS.index(best)] == 1


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_fails_after_its_retries_and_caches_nothing(setup):
    cfg, p, fake = setup
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(LLMBlendError, match=r"cannot be reached: connection error.*after 2 attempts.*base_url"):
        run(cfg(openai={"base_url": url, "max_attempts": 2}), p)
    assert not p["out"].exists() and not p["metrics"].exists(), "no partial output"
    assert len(LabelCache(p["cache"])) == 0, "an unreachable endpoint is no judgment to cache"
    m = run(cfg(), p)  # the right endpoint: every pair is asked, none was cached as an error
    assert fake.count() == N_PAIRS and m["labels"]["error"] == 0


def test_a_judge_with_only_error_labels_fails_and_errors_never_count_as_labels(setup):
    cfg, p, fake = setup
    fake.queue_fault("500", times=2)  # one pair's two attempts: that pair alone is `error`
    m = run(cfg(openai={"concurrency": 1, "max_attempts": 2}), p)
    assert m["labels"]["error"] == 1 and m["pairs_failed"] == 1 and m["pairs_labelled"] == N_PAIRS - 1
    p["cache"].unlink()
    fake.queue_fault("500", times=2 * N_PAIRS)  # the endpoint answers, but only with errors
    with pytest.raises(LLMBlendError, match=r"gave no label: all 18 judged pairs are `error`.*HTTP 500"):
        run(cfg(openai={"concurrency": 1, "max_attempts": 2}), p)
