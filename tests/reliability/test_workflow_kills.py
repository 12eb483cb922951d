"""Whole-workflow faults on the "rel" profile (tests/reliability/workflow_setup.py): Snakemake and
DVC are SIGKILLed at seeded random moments while generation and judge calls are in flight (after a
seeded number of calls, so every kill lands mid-run), restarted
until done, and must end byte-identical to an uninterrupted Snakemake run, see a consistent state
(Snakemake: nothing to do; DVC: up to date), and never have asked the server again for an answer that
was already recorded (a finished generation line or a cached judge label). Then every file of both
copies (artifacts, logs, Snakemake metadata, DVC files and cache) is searched for the API key.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

import workflow_setup as ws
from fake_openai import FakeOpenAI
from rel_figures import FIGURES
from test_kill import cached_keys
from workflow_utils import clear_torn_dvc_lock, clear_torn_dvc_rwlock

pytestmark = pytest.mark.slow
KILLS = 3
DVC_COPIES: list[Path] = []  # copies the DVC test ran, searched for the key afterwards


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(reply_fn=ws.serve) as server:
        yield server


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fake):
    """One uninterrupted Snakemake run: its artifacts, its time and its calls."""
    d = ws.make_copy(tmp_path_factory.mktemp("ref"), fake.base_url)
    fake.reset_log()
    t0 = time.monotonic()
    ws.run(ws.SNAKEMAKE, d)
    seconds = time.monotonic() - t0
    calls = [r.body for r in fake.requests if r.path.endswith("/chat/completions")]
    art = ws.outputs(d)
    assert ws.TARGET in art and len(art) > 10
    return d, art, seconds, calls


class Recorded:
    """What a copy has recorded at a moment: finished generation lines and cached judge labels."""

    def __init__(self, d: Path):
        from llmblend.config import load_config
        from llmblend.generate.prompts import user_text
        from llmblend.judge.backends import OpenAIJudge

        self.d = d
        cfg = load_config([str(d / "params.yaml"), str(d / "config" / "rel.yaml")])
        self.gen_model = {g["name"]: g["openai"]["model"] for g in cfg["generate"]["generators"]}
        self.judge = OpenAIJudge(cfg["judge"], cache=None)
        self.user_text = user_text

    def texts_by_id(self):
        out = {}
        for split in ("train", "val", "test"):
            p = self.d / "data" / "rel" / "splits" / f"{split}.jsonl"
            if p.exists():
                for line in open(p):
                    rec = json.loads(line)
                    out[rec["id"]] = self.user_text(rec)
        return out

    def now(self) -> set:
        """(model, prompt) of every generation line on disk, and the key of every cached judge label."""
        texts, got = self.texts_by_id(), set()
        for name, model in self.gen_model.items():
            for p in (self.d / "data" / "rel" / "generate" / name).rglob("shard-*.jsonl*"):
                for line in p.read_text().splitlines():
                    try:
                        rid = json.loads(line)["id"]
                    except (ValueError, KeyError):
                        continue  # a torn last line of a partial file: not recorded
                    got.add((model, texts[rid]))
        got |= cached_keys(self.d / "data" / "rel" / "judge" / "cache" / "test.sqlite")
        return got

    def key_of(self, body: dict):
        if ws.is_judge(body):
            for line in open(self.d / "data" / "rel" / "candidates" / "test.jsonl"):
                ex = json.loads(line)
                texts = [c["text"] for c in ex["candidates"]]
                for ta in texts:
                    for tb in texts:
                        if ta != tb and self.judge.request_body(ex, ta, tb)["messages"] == body["messages"]:
                            return self.judge.key(ex, ta, tb)
            raise AssertionError("a judge request for no candidate pair")
        return (body["model"], body["messages"][-1]["content"])


def kill_restart(cmd_first, cmd_again, d: Path, fake, n_calls: int, rng, what: str, recover=None):
    """Start, SIGKILL at a seeded moment while answers are being asked for (after a random number of the
    calls still to make, so the kill always lands mid-run), KILLS times; then run to the end.
    Returns (asked bodies per run, calls asked again for answers recorded before their run)."""
    rec = Recorded(d)
    per_run, repeated_recorded = [], 0
    for k in range(KILLS + 1):
        before = rec.now() if (d / "data" / "rel" / "splits").exists() else set()
        if k and recover:
            recover(d) if callable(recover) else ws.run(recover, d)
        seen, calls_before = len(fake.requests), fake.count()
        proc = ws.popen(cmd_first if k == 0 else cmd_again, d)
        if k < KILLS:
            target = calls_before + rng.randint(1, max(1, (n_calls - len(before)) // 2))
            deadline = time.monotonic() + 300
            while fake.count() < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert proc.poll() is None, f"{what}: run {k} ended before its kill:\n" + \
                proc.stderr.read().decode()[-3000:]
            os.killpg(proc.pid, signal.SIGKILL)
            FIGURES[f"kills_survived.{what}"] += 1
            proc.wait()
            fake.wait_until_quiet()  # the killed run's torn request is logged as its own, not the next run's
        else:
            rc = proc.wait(timeout=600)
            assert rc == 0, proc.stderr.read().decode()[-4000:]
        asked = [r for r in fake.requests[seen:] if r.path.endswith("/chat/completions")]
        # a kill can land while the client is still sending: the server then logs a torn body (None),
        # a request never answered, so nothing of it was recorded; count it, compare the rest
        bodies = [r.body for r in asked if r.body is not None]
        FIGURES[f"torn_requests_from_kills.{what}"] += len(asked) - len(bodies)
        assert k < KILLS or len(bodies) == len(asked), "the run that was not killed sent a torn request"
        per_run.append(bodies)
        if (d / "data" / "rel" / "candidates" / "test.jsonl").exists() or not any(ws.is_judge(b) for b in bodies):
            again = [b for b in bodies if rec.key_of(b) in before]
            repeated_recorded += len(again)
    # the last run resumed: it asked only for what the killed runs had not recorded
    assert 0 < len(per_run[-1]) < n_calls, [len(r) for r in per_run]
    return per_run, repeated_recorded


def check_calls(per_run, ref_calls, what):
    """Every call of the reference was made; a repeat is only one whose answer was never recorded."""
    key = lambda b: json.dumps([b["model"], b["messages"]])  # noqa: E731
    made = [key(b) for run in per_run for b in run]
    want = {key(b) for b in ref_calls}
    assert set(made) == want
    repeats = len(made) - len(set(made))
    FIGURES[f"calls.{what}"] += len(made)
    FIGURES[f"in_flight_calls_reasked.{what}"] += repeats
    return repeats


def test_snakemake_killed_and_rerun_matches_and_is_consistent(tmp_path, fake, reference):
    ref_dir, ref_art, _, ref_calls = reference
    d = ws.make_copy(tmp_path / "sm", fake.base_url)
    again = ws.SNAKEMAKE + ["--rerun-incomplete"]
    # a SIGKILLed Snakemake leaves its lock: `--unlock` is the documented recovery
    per_run, dup = kill_restart(ws.SNAKEMAKE, again, d, fake, len(ref_calls), random.Random(2024), "snakemake",
                                recover=ws.SNAKEMAKE + ["--unlock"])
    FIGURES["duplicate_calls.snakemake"] += dup
    assert dup == 0, f"{dup} calls asked again for answers already recorded"
    check_calls(per_run, ref_calls, "snakemake")
    got, want = ws.outputs(d, resumed=True), ws.outputs(ref_dir, resumed=True)
    assert got == want, ws.differences(got, want)
    assert all(ws.outputs(d)[k] == v for k, v in ref_art.items() if k.endswith(".jsonl")), "data files differ"
    r = ws.run(ws.SNAKEMAKE + ["-n"], d)
    assert "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
    assert not [p for p in (d / ".snakemake" / "incomplete").rglob("*") if p.is_file()]


def test_snakemake_killed_inside_the_judge_resumes_from_its_cached_labels(tmp_path, fake, reference):
    """Not left to chance: the kill lands while the judge has labelled some pairs and not all
    (the random kills above reach the judge only on some machines' timings)."""
    ref_dir, ref_art, _, ref_calls = reference
    d = ws.make_copy(tmp_path / "sm-judge", fake.base_url)
    ws.run(ws.SNAKEMAKE[:1] + ["data/rel/candidates/test.jsonl"] + ws.SNAKEMAKE[2:], d)
    db = d / "data" / "rel" / "judge" / "cache" / "test.sqlite"
    n_judge = sum(ws.is_judge(b) for b in ref_calls)
    fake.queue_fault("slow", times=n_judge, delay=0.3)  # each label takes a while: the kill lands between
    proc = ws.popen(ws.SNAKEMAKE, d)
    deadline = time.monotonic() + 300
    while len(cached_keys(db)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the judge finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    fake.clear_faults()
    at_kill = cached_keys(db)
    assert 2 <= len(at_kill) < n_judge
    ws.run(ws.SNAKEMAKE + ["--unlock"], d)
    seen = len(fake.requests)
    ws.run(ws.SNAKEMAKE + ["--rerun-incomplete"], d)
    rec = Recorded(d)
    asked = [rec.key_of(r.body) for r in fake.requests[seen:] if r.path.endswith("/chat/completions")]
    assert not set(asked) & at_kill, "a label cached before the kill was asked for again"
    got, want = ws.outputs(d, resumed=True), ws.outputs(ref_dir, resumed=True)
    assert got == want, ws.differences(got, want)
    assert all(ws.outputs(d)[k] == v for k, v in ref_art.items() if k.endswith(".jsonl")), "data files differ"
    FIGURES["kills_survived.snakemake_judge"] += 1


def _clear_torn_dvc_files(d: Path) -> None:
    # a kill inside DVC's own write of its rwlock or of dvc.lock tears it: removing it is the documented
    # recovery (the run cache brings a finished stage back without running it)
    if clear_torn_dvc_rwlock(d):
        FIGURES["dvc_rwlock_torn_by_kill.dvc"] += 1
    if clear_torn_dvc_lock(d):
        FIGURES["dvc_lock_torn_by_kill.dvc"] += 1


def test_dvc_killed_and_rerun_matches_and_is_up_to_date(tmp_path, fake, reference):
    ref_dir, ref_art, _, ref_calls = reference
    d = ws.make_copy(tmp_path / "dvc", fake.base_url)
    DVC_COPIES.append(d)
    cmd = ["dvc", "repro", *ws.dvc_stages(d)]
    per_run, dup = kill_restart(cmd, cmd, d, fake, len(ref_calls), random.Random(77), "dvc",
                                recover=_clear_torn_dvc_files)
    FIGURES["duplicate_calls.dvc"] += dup
    assert dup == 0, f"{dup} calls asked again for answers already recorded"
    check_calls(per_run, ref_calls, "dvc")
    got, want = ws.outputs(d, resumed=True), ws.outputs(ref_dir, resumed=True)
    assert got == want, "DVC after kills differs from an uninterrupted Snakemake run:\n" + ws.differences(got, want)
    assert all(ws.outputs(d)[k] == v for k, v in ref_art.items() if k.endswith(".jsonl")), "data files differ"
    r = ws.run(["dvc", "status", *ws.dvc_stages(d)], d)
    assert "up to date" in r.stdout, r.stdout[-2000:]


def test_no_file_of_either_tool_holds_the_api_key(fake, reference, tmp_path_factory):
    """Both tools' copies: artifacts, logs, .snakemake, dvc.lock, .dvc cache, benchmarks."""
    ref_dir = reference[0]
    if not DVC_COPIES:  # run alone: make a DVC run to search
        d = ws.make_copy(tmp_path_factory.mktemp("dvc-secret"), fake.base_url)
        ws.run(["dvc", "repro", *ws.dvc_stages(d)], d)
        DVC_COPIES.append(d)
    d = DVC_COPIES[-1]
    key = ws.KEY.encode()
    n = 0
    for root in (ref_dir, d):
        logs = list((root / "results" / "rel" / "logs").rglob("*.log"))
        assert logs and all(p.stat().st_size for p in logs)  # the logs were written: the search is not empty
        for p in ws.all_files(root):
            if p.is_file() and not p.is_symlink():
                n += 1
                assert key not in p.read_bytes(), f"the API key is in {p}"
    assert (d / "dvc" / "rel" / "dvc.lock").exists()
    FIGURES["files_searched_for_the_key"] += n
