"""Bad input files: malformed records fed to every stage's reader through its CLI (hypothesis).

A valid input file is built per stage; hypothesis damages one line of it (cut JSON, bytes that are not
UTF-8, a blank line, a value that is not an object, a missing field, a field of the wrong type, a
broken candidate). The stage's command must then either still succeed (the damage touched nothing it
reads) or stop with exit status 2 and one line naming the file and the damaged line, never a traceback
from inside a library, never a hang, and never leave an output behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmblend.cli import main
from rel_figures import FIGURES

ROOT = Path(__file__).resolve().parents[2]
N_RECORDS = 4
MODELS = ["m0", "m1", "m2"]
HANG_S = 60


def record(i: int) -> dict:
    value = 3 + i
    return {
        "id": f"demo/arithmetic/{i:06d}", "instruction": f"What is {value - 1} plus 1?", "input": "",
        "output": str(value), "source": "demo/arithmetic",
        "rubric": [{"check": "number", "value": value}],
        "candidates": [{"model": m, "decoding_method": "greedy", "text": f"{value + k % 2}", "n_prompt_tokens": 9,
                        "n_tokens": 1, "logprobs": -1.0, "flags": [],
                        "scores": {"bleu": 10.0 * k, "rouge1": 0.1 * k, "rouge2": 0.0, "rougeL": 0.1 * k,
                                   "rougeLsum": 0.1 * k, "bertscore": 0.5, "clm_logprob": -float(k)}}
                       for k, m in enumerate(MODELS)],
    }


def ranking(i: int) -> dict:
    return {"id": f"demo/arithmetic/{i:06d}", "ranks": [1, 2, 3], "n_forward": 0}


# stage -> (which fields a record must have for that reader, the command line)
OVERLAY = {
    "data": {"split": {"mode": "shuffle", "sizes": {"val": 1, "test": 1, "train": "rest"}}},
    "metrics": {"clm_logprob": {"enabled": False, "reason": "fuzz test: no model"},
                "bertscore": {"enabled": False, "reason": "fuzz test: no model"}},
    "judge": {"backend": "rubric"},
}


def stage_command(stage: str, d: Path, inp: Path, cfg: Path) -> tuple[list[str], Path]:
    """The CLI line that reads `inp`, and the folder where everything it writes goes."""
    out = d / "out"
    common = ["--config", str(ROOT / "params.yaml"), "--config", str(cfg)]
    if stage == "data":
        return ["prepare-data", *common, "--out-dir", str(out)], out
    if stage == "metrics":
        return ["score-candidates", *common, "--in", str(inp), "--out", str(out / "scored.jsonl"),
                "--report", str(out / "report.json")], out
    if stage == "judge":
        return ["judge-pairs", *common, "--split", "test", "--candidates", str(inp), "--out",
                str(out / "judge.jsonl"), "--metrics", str(out / "judge.json"), "--cache", str(out / "c.sqlite")], out
    if stage == "rank":
        return ["rank-candidates", *common, "--methods", "random,oracle-bleu", "--input", str(inp),
                "--split", "test", "--out-dir", str(out)], out
    if stage == "evaluate":
        return ["evaluate", *common, "--scored", str(inp), "--out-dir", str(out)], out
    if stage == "generate":
        return ["generate-candidates", *common, "--generator", "api", "--split-file", str(inp), "--shard", "0",
                "--out", str(out / "shard-0.jsonl")], out
    if stage == "evaluate-rankings":
        return ["evaluate", *common, "--scored", str(d / "scored.jsonl"), "--ranking", f"random={inp}",
                "--out-dir", str(out)], out
    raise ValueError(stage)


# fields a stage's reader needs: removing or retyping one must be caught (by name and line)
NEEDED = {
    "data": {"id", "instruction", "input", "output"},
    "generate": {"id", "instruction", "input"},
    "metrics": {"id", "output", "candidates"},
    "judge": {"id", "candidates", "rubric"},
    "rank": {"id", "instruction", "candidates"},
    "evaluate": {"id", "candidates"},
    "evaluate-rankings": {"id", "ranks"},
}

STAGES = list(NEEDED)

json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=5)


@st.composite
def damage(draw, stage: str):
    """(line number, how, new bytes of that line) for one damaged line of the stage's input."""
    lineno = draw(st.integers(1, N_RECORDS))
    rec = ranking(lineno - 1) if stage == "evaluate-rankings" else record(lineno - 1)
    how = draw(st.sampled_from(["truncate", "garbage", "bad_utf8", "blank", "not_object", "drop_field",
                                "retype_field", "bad_candidate"]))
    line = json.dumps(rec).encode()
    if how == "truncate":
        line = line[:draw(st.integers(1, len(line) - 1))]
    elif how == "garbage":
        line = draw(st.text(min_size=1, max_size=30).filter(lambda t: "\n" not in t and "\r" not in t
                                                            and not t.lstrip().startswith("{"))).encode()
    elif how == "bad_utf8":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80"])) + line[at:]
    elif how == "blank":
        line = draw(st.sampled_from([b"", b" ", b"\t"]))
    elif how == "not_object":
        line = json.dumps(draw(st.lists(json_values, max_size=3) | st.integers() | st.text(max_size=8)
                               | st.none())).encode()
    elif how == "drop_field":
        field = draw(st.sampled_from(sorted(rec)))
        del rec[field]
        line, how = json.dumps(rec).encode(), f"drop_field:{field}"
    elif how == "retype_field":
        field = draw(st.sampled_from(sorted(rec)))
        rec[field] = draw(json_values.filter(lambda v: type(v) is not type(rec[field])))
        line, how = json.dumps(rec).encode(), f"retype_field:{field}"
    else:
        if "candidates" not in rec:
            rec["ranks"] = draw(st.lists(json_values, min_size=1, max_size=3).filter(
                lambda v: not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)))
            line, how = json.dumps(rec).encode(), "retype_field:ranks"
        else:
            k = draw(st.integers(0, len(MODELS) - 1))
            key = draw(st.sampled_from(["model", "text", "scores", None]))
            if key is None:
                rec["candidates"][k] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
            else:
                rec["candidates"][k][key] = draw(json_values.filter(lambda v: not isinstance(v, (str, dict))))
            line, how = json.dumps(rec).encode(), f"bad_candidate:{key}"
    return lineno, how, line


@contextlib.contextmanager
def no_hang(seconds: int):
    def boom(*_):
        raise TimeoutError(f"the reader hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def error_line(err: str, command: str) -> str:
    """The CLI's one error line (progress bars and the run log may print around it)."""
    lines = [x for x in err.splitlines() if x.startswith(f"llmblend {command}: error: ")]
    assert len(lines) == 1, f"expected one error line from llmblend {command}:\n{err[-3000:]}"
    return lines[0]


def run_cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), no_hang(HANG_S):
        rc = main(argv)
    return rc, err.getvalue()


_SERVER = []


def loopback_url() -> str:
    """One loopback OpenAI-compatible server for the generate stage's valid inputs (the process's life)."""
    if not _SERVER:
        import atexit

        from fake_openai import FakeOpenAI

        _SERVER.append(FakeOpenAI(reply_fn=lambda req: "an answer").start())
        atexit.register(_SERVER[0].stop)
    return _SERVER[0].base_url


def write_inputs(d: Path, stage: str, lineno: int, line: bytes) -> tuple[Path, Path]:
    rows = ([ranking(i) for i in range(N_RECORDS)] if stage == "evaluate-rankings"
            else [record(i) for i in range(N_RECORDS)])
    lines = [json.dumps(r).encode() for r in rows]
    lines[lineno - 1] = line
    inp = d / "input.jsonl"
    inp.write_bytes(b"\n".join(lines) + b"\n")
    (d / "scored.jsonl").write_text("".join(json.dumps(record(i)) + "\n" for i in range(N_RECORDS)))
    overlay = {}
    if stage == "data":
        overlay["data"] = {"sources": [{"type": "jsonl", "name": "fuzz", "path": str(inp)}], **OVERLAY["data"]}
    if stage == "generate":
        overlay["generate"] = {"shards": 1, "splits": ["test"], "generators": [
            {"name": "api", "backend": "openai", "decoding": {"method": "greedy", "max_new_tokens": 8},
             "openai": {"model": "gen-1", "base_url": loopback_url(), "api_key_env": None, "max_retries": 0}}]}
    overlay["metrics"] = OVERLAY["metrics"]
    overlay["judge"] = OVERLAY["judge"]
    cfg = d / "overlay.yaml"
    cfg.write_text(yaml.safe_dump(overlay))
    return inp, cfg


def check(stage: str, lineno: int, how: str, line: bytes):
    FIGURES[f"malformed_inputs_tried.{stage}"] += 1
    FIGURES["malformed_inputs_tried"] += 1
    with tempfile.TemporaryDirectory(prefix="rel-fuzz-") as tmp:
        d = Path(tmp)
        inp, cfg = write_inputs(d, stage, lineno, line)
        argv, out = stage_command(stage, d, inp, cfg)
        rc, err = run_cli(argv)
        syntactic = how in ("truncate", "garbage", "bad_utf8", "blank", "not_object")
        field = how.split(":", 1)[1] if ":" in how else None
        must_fail = syntactic or (how.startswith(("drop_field", "retype_field")) and field in NEEDED[stage])
        where = f"{inp}:{lineno}"
        if must_fail:
            assert rc == 2, f"{stage}: damage {how} on line {lineno} was not caught (rc {rc}): {line[:200]!r}\n{err}"
        assert rc in (0, 2), f"{stage}: exit status {rc}\n{err}"
        if rc == 2:
            FIGURES["malformed_inputs_rejected"] += 1
            # the CLI's one line (the run log may repeat it above); never a traceback
            assert "Traceback" not in err, err
            msg = [error_line(err, argv[0])]
            assert str(inp) in msg[0], f"{stage}: the error does not name the file: {msg[0]}"
            if syntactic or must_fail:
                assert where in msg[0], f"{stage}: the error does not name line {lineno}: {msg[0]}"
            if must_fail and field:
                assert field in msg[0], f"{stage}: the error does not name field {field!r}: {msg[0]}"
            left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
            assert not left, f"{stage}: a failed run left outputs behind: {left}"
        else:
            FIGURES["malformed_inputs_harmless"] += 1
            assert out.exists() and any(out.rglob("*")), f"{stage}: exit 0 but no output"


@pytest.mark.parametrize("stage", STAGES)
def test_valid_input_passes(stage, tmp_path):
    """The undamaged file goes through: the damage, not the harness, makes the fuzz cases fail."""
    inp, cfg = write_inputs(tmp_path, stage, 1, json.dumps(ranking(0) if stage == "evaluate-rankings"
                                                           else record(0)).encode())
    argv, out = stage_command(stage, tmp_path, inp, cfg)
    rc, err = run_cli(argv)
    assert rc == 0, err
    assert any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("stage", STAGES)
def test_damaged_input_gives_a_located_error_and_no_output(stage):
    @settings(max_examples=50, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(damage(stage))
    def fuzz(case):
        check(stage, *case)

    fuzz()


def test_fuser_readers_give_located_errors():
    """The fuser's split and rankings readers (its commands need a tokenizer first, so they are called directly)."""
    from llmblend.errors import InputError
    from llmblend.fuser.data import iter_ranked, read_rankings

    needed = {"split": {"id", "instruction", "input", "output", "candidates"}, "rankings": {"id", "ranks"}}

    @settings(max_examples=50, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(st.sampled_from(["split", "rankings"]).flatmap(
        lambda kind: st.tuples(st.just(kind), damage("evaluate-rankings" if kind == "rankings" else "fuser"))))
    def fuzz(case):
        kind, (lineno, how, line) = case
        FIGURES["malformed_inputs_tried.fuser"] += 1
        FIGURES["malformed_inputs_tried"] += 1
        with tempfile.TemporaryDirectory(prefix="rel-fuzz-") as tmp:
            d = Path(tmp)
            inp, _ = write_inputs(d, "evaluate-rankings" if kind == "rankings" else "fuser", lineno, line)
            field = how.split(":", 1)[1] if ":" in how else None
            must_fail = ":" not in how or field in needed[kind]
            try:
                with no_hang(HANG_S):
                    if kind == "rankings":
                        read_rankings(inp)
                    else:
                        list(iter_ranked(inp, "oracle:bleu"))
            except InputError as e:
                FIGURES["malformed_inputs_rejected"] += 1
                assert str(inp) in str(e)
                if must_fail:
                    assert f"{inp}:{lineno}" in str(e), str(e)
            else:
                assert not must_fail, f"fuser {kind}: damage {how} on line {lineno} was not caught"
                FIGURES["malformed_inputs_harmless"] += 1

    fuzz()
