"""Faults from the loopback OpenAI-compatible server, through the `llmblend judge-pairs` command.

Every fault kind is injected (429 with Retry-After, 500, a reply slower than the timeout, truncated
JSON, a connection reset, a reply outside the four labels). The run must finish or stop cleanly, count
each fault in its metrics, and never record a failed pair as a tie: every label is either the one the
fake judge gives for that pair, or `error` / `unparsable` with its reason.
"""

from __future__ import annotations

import random
import time

from judge_setup import MODELS, expected_label, quality, read_labels, read_metrics, run_judge, write_candidates, \
    write_config
from rel_figures import FIGURES

N_EXAMPLES = 8
N_PAIRS = N_EXAMPLES * len(MODELS) * (len(MODELS) - 1) // 2
TIMEOUT_S = 2.0  # what each injected "hang" costs; far above a loopback reply on a loaded machine
STAT_OF = {"429": "http_429", "500": "http_500", "hang": "timeout", "truncated": "bad_response",
           "reset": "connection_error"}


def check_labels(d, refusing=frozenset()):
    """Every recorded label is the judge's real answer for that pair, or a failure with its reason."""
    failed = 0
    for rec in read_labels(d):
        i = int(rec["id"][2:])
        errors = rec.get("errors", {})
        for key, label in rec["cmp_results"].items():
            a, b = key.split(",")
            if label in ("error", "unparsable"):
                assert key in errors and errors[key], f"{rec['id']} {key}: {label} without a reason"
                failed += 1
                if label == "unparsable":
                    assert i in refusing and MODELS[-1] in (a, b), f"{rec['id']} {key}: unparsable on a good reply"
                continue
            assert key not in errors
            qa, qb = quality(i, MODELS.index(a)), quality(i, MODELS.index(b))
            assert label == expected_label(qa, qb), f"{rec['id']} {key}: {label!r} is not the judge's answer"
    return failed


def test_every_fault_kind_is_retried_counted_and_never_a_tie(tmp_path, fake_openai):
    from judge_setup import fair_judge

    fake_openai.reply_fn = fair_judge
    refusing = {1, 5}
    write_candidates(tmp_path / "candidates.jsonl", N_EXAMPLES, refusing)
    kinds = ["429"] * 4 + ["500"] * 3 + ["hang"] * 2 + ["truncated"] * 3 + ["reset"] * 3
    # faults hit consecutive requests: a pair may meet all of them, so it may try one time more than that
    attempts = len(kinds) + 1
    # the timeouts are the "hang" faults alone: a hang waits for the client to give up, and a normal
    # loopback reply never takes TIMEOUT_S, so the counts below are exact on a loaded machine too
    conf = write_config(tmp_path / "conf.yaml", fake_openai.base_url, concurrency=1, timeout_s=TIMEOUT_S,
                        max_attempts=attempts)
    random.Random(10).shuffle(kinds)
    for k in kinds:
        fake_openai.queue_fault(k, retry_after=0.05 if k == "429" else None)
    r = run_judge(tmp_path, conf)
    assert r.returncode == 0, r.stderr[-3000:]
    m = read_metrics(tmp_path)
    s = m["backend_stats"]
    for kind in set(kinds):
        assert s.get(STAT_OF[kind], 0) == kinds.count(kind), (kind, s)
        FIGURES[f"faults_injected.{kind}"] += kinds.count(kind)
    # the refusing examples: 3 pairs each hold the q9 candidate; each is asked max_attempts times
    n_off = 3 * len(refusing)
    assert m["labels"]["unparsable"] == n_off and s["unparsable_reply"] == n_off * attempts
    FIGURES["faults_injected.off_label_reply"] += n_off * attempts
    # an unparsable pair is a failure, not a label: counted apart
    assert m["labels"]["error"] == 0 and m["pairs_labelled"] == N_PAIRS - n_off and m["pairs_failed"] == n_off
    assert m["dropped_pairs"] == 0
    assert check_labels(tmp_path, refusing) == n_off
    assert fake_openai.pending_faults() == 0


def test_retries_exhausted_are_errors_with_reasons_and_a_rerun_pays_only_for_them(tmp_path, fake_openai):
    from judge_setup import fair_judge

    fake_openai.reply_fn = fair_judge
    write_candidates(tmp_path / "candidates.jsonl", N_EXAMPLES)
    conf = write_config(tmp_path / "conf.yaml", fake_openai.base_url, concurrency=1, timeout_s=TIMEOUT_S,
                        max_attempts=2)
    # each kind twice in a row: with 2 attempts a pair, each kind exhausts exactly one pair's retries
    kinds = ["500", "hang", "truncated", "reset", "429"]
    for k in kinds:
        fake_openai.queue_fault(k, times=2, retry_after=0.05 if k == "429" else None)
        FIGURES[f"faults_injected.{k}"] += 2
    r = run_judge(tmp_path, conf)
    assert r.returncode == 0, r.stderr[-3000:]
    m = read_metrics(tmp_path)
    assert m["labels"]["error"] == len(kinds), m["labels"]
    assert check_labels(tmp_path) == len(kinds)
    reasons = sorted(r for rec in read_labels(tmp_path) for r in rec.get("errors", {}).values())
    assert len(reasons) == len(kinds) and all("after 2 attempts" in x for x in reasons), reasons
    calls = fake_openai.count()
    # a plain rerun asks nothing (errors are cached, not silently re-paid); retry_errors asks only them
    assert run_judge(tmp_path, conf).returncode == 0 and fake_openai.count() == calls
    conf2 = write_config(tmp_path / "conf2.yaml", fake_openai.base_url, concurrency=1, timeout_s=TIMEOUT_S,
                         max_attempts=2)
    text = conf2.read_text().replace("backend: openai", "backend: openai\n  retry_errors: true")
    conf2.write_text(text)
    assert run_judge(tmp_path, conf2).returncode == 0
    assert fake_openai.count() == calls + len(kinds)
    m = read_metrics(tmp_path)
    assert m["labels"]["error"] == 0 and check_labels(tmp_path) == 0


def test_retry_after_is_honoured(tmp_path, fake_openai):
    from judge_setup import fair_judge

    fake_openai.reply_fn = fair_judge
    arrivals = []
    take = fake_openai._take_fault

    def timed_take(path):  # when each request reached the server
        arrivals.append(time.monotonic())
        return take(path)

    fake_openai._take_fault = timed_take
    write_candidates(tmp_path / "candidates.jsonl", 1)
    conf = write_config(tmp_path / "conf.yaml", fake_openai.base_url, concurrency=1, max_attempts=6)
    fake_openai.queue_fault("429", times=3, retry_after=0.5)
    FIGURES["faults_injected.429"] += 3
    r = run_judge(tmp_path, conf)
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_metrics(tmp_path)["backend_stats"]["http_429"] == 3
    # backoff_s is 0.01: only Retry-After can make the three retries wait this long
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:4])]
    assert len(gaps) == 3 and min(gaps) >= 0.45, gaps
