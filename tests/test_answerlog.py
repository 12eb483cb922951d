"""The answer log (llmblend/answerlog.py), the one resume log of generation, metrics and fusion:
a torn last line is cut before the next append, a log of other settings goes, a damaged middle
line is an error naming its line; fusion resumed over a torn line redoes no work."""

from __future__ import annotations

import json

import pytest

from llmblend.answerlog import AnswerLog
from llmblend.errors import InputError
from llmblend.io import read_jsonl, write_jsonl


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path, monkeypatch):
    import llmblend.answerlog

    synced = []
    real_fsync = llmblend.answerlog.os.fsync
    monkeypatch.setattr(llmblend.answerlog.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    p = tmp_path / "log.jsonl"
    with AnswerLog(p, "k1", "answer") as log:
        log.append([("a", 1), ("b", 2)])
    assert len(synced) == 1  # each append is on disk when it returns
    with open(p, "a") as f:
        f.write('{"id": "c", "ans')  # a kill in the middle of a line
    log = AnswerLog(p, "k1", "answer")
    assert log.read() == {"a": 1, "b": 2}
    with log:
        log.append([("c", 3)])
    lines = p.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"answers_for": "k1"}, {"id": "a", "answer": 1},
                                              {"id": "b", "answer": 2}, {"id": "c", "answer": 3}]
    assert AnswerLog(p, "k1", "answer").read() == {"a": 1, "b": 2, "c": 3}


def test_a_log_of_other_settings_is_discarded_and_a_damaged_line_named(tmp_path):
    p = tmp_path / "log.jsonl"
    with AnswerLog(p, "k1", "answer") as log:
        log.append([("a", 1)])
    assert AnswerLog(p, "k2", "answer").read() == {} and not p.exists()
    p.write_text('{"answers_for": "k1"}\n{"id": "a", "answer": 1}\n{broken\n{"id": "b", "answer": 2}\n')
    with pytest.raises(InputError, match=r"log.jsonl:3"):
        AnswerLog(p, "k1", "answer").read()
    p.write_text('{"answers_for": "k1"}\n{"id": "a", "other": 1}\n')
    with pytest.raises(InputError, match=r"log.jsonl:2.*`id` and `answer`"):
        AnswerLog(p, "k1", "answer").read()


def test_a_refused_write_leaves_no_log_without_an_answer(tmp_path):
    p = tmp_path / "log.jsonl"
    with AnswerLog(p, "k1", "answer"):
        pass
    AnswerLog(p, "k1", "answer").drop_if_no_answer()
    assert not p.exists()
    with AnswerLog(p, "k1", "answer") as log:
        log.append([("a", 1)])
    AnswerLog(p, "k1", "answer").drop_if_no_answer()
    assert AnswerLog(p, "k1", "answer").read() == {"a": 1}


def test_fusion_resumed_over_a_torn_line_fuses_each_chunk_once(tmp_path, monkeypatch):
    """Killed twice, the first time in the middle of a line: the second run must cut the torn line
    before it appends, or the third run stops reading at the tear and fuses again every answer the
    second one wrote."""
    from llmblend.fuser import infer
    from llmblend.fuser.prompt import PromptSpec

    class RecordingFuser:
        spec = PromptSpec(family="causal_lm", top_k=2)
        generate_defaults = {"num_beams": 1}
        calls: list = []
        die_at = None

        def fuse_detailed(self, instructions, inputs, topk, batch_size, seed_offset, **kw):
            if len(self.calls) + 1 == self.die_at:
                raise KeyboardInterrupt
            self.calls.append(seed_offset)
            return [{"text": " | ".join(t), "n_tokens": 1, "n_prompt_tokens": 1, "flags": []} for t in topk]

    fuser = RecordingFuser()
    monkeypatch.setattr(infer, "load_fuser", lambda model_dir, **kw: fuser)
    monkeypatch.setattr(infer, "CHUNK_BATCHES", 1)  # a chunk = one batch of 2 records
    (tmp_path / "fuser").mkdir()
    (tmp_path / "fuser" / "config.json").write_text("{}")
    rows = [{"id": f"t/{i}", "instruction": f"q{i}", "input": "", "output": f"a{i}",
             "candidates": [{"model": f"m{j}", "text": f"c{i}{j}"} for j in range(3)]} for i in range(8)]
    write_jsonl(tmp_path / "split.jsonl", rows)
    write_jsonl(tmp_path / "ranks.jsonl", [{"id": r["id"], "ranks": [1, 2, 3], "scores": [3.0, 2.0, 1.0]}
                                           for r in rows])
    partial = tmp_path / "fused.jsonl.partial.jsonl"

    def run(die_at=None):
        fuser.calls, fuser.die_at = [], die_at
        return infer.fuse_split(tmp_path / "fuser", tmp_path / "split.jsonl", "pairranker", tmp_path / "fused.jsonl",
                                tmp_path / "ranks.jsonl", batch_size=2)

    with pytest.raises(KeyboardInterrupt):
        run(die_at=2)  # chunk 0 (records 0-1) logged
    with open(partial, "a", encoding="utf-8") as f:
        f.write('{"id":"t/2","res')  # killed in the middle of writing the next line
    with pytest.raises(KeyboardInterrupt):
        run(die_at=3)  # chunks 2 and 4 fused and logged, then killed
    assert fuser.calls == [2, 4]
    assert all(json.loads(line) for line in partial.read_text().splitlines())  # the tear is gone
    report = run()
    assert fuser.calls == [6] and report["fused_now"] == 2  # only the chunk no run finished
    assert [r["candidates"][0]["text"] for r in read_jsonl(tmp_path / "fused.jsonl")] == \
        [f"c{i}0 | c{i}1" for i in range(8)]
    assert not partial.exists()
