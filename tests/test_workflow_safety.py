"""Config values reach Snakemake's command lines as one shell word each, and a dry run warns of a
missing API key (issue 20)."""

import os
import shlex
import subprocess

from workflow_utils import ROOT, env

from llmblend.workflow.snake import missing_api_keys


def test_a_config_path_with_shell_characters_stays_one_word(tmp_path):
    folder = tmp_path / "my profiles; touch INJECTED"
    folder.mkdir()
    profile = folder / "ci $(touch INJECTED2).yaml"
    # the ci profile with an OpenAI judge: the dry run must also warn that its key is not set
    profile.write_text((ROOT / "config" / "ci.yaml").read_text() + "judge: {backend: openai}\n")
    e = env()
    e.pop("OPENAI_API_KEY", None)
    r = subprocess.run(["snakemake", "-n", "-p", "--forceall", "--cores", "2", "--configfile", str(profile)],
                       cwd=ROOT, env=e, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    cmds = [line.split("Shell command: ", 1)[1] for line in out.splitlines() if "Shell command: llmblend" in line]
    assert len(cmds) > 10
    rel = os.path.relpath(profile, ROOT)
    for cmd in cmds:
        words = shlex.split(cmd)
        assert words[words.index(rel) - 1] == "--config", cmd
        assert not any("INJECTED" in w and w != rel for w in words), cmd
    assert "WARNING: judge (judge.backend: openai) reads its API key from $OPENAI_API_KEY, which is not set" in out


def test_missing_api_keys_names_each_openai_user_and_its_variable():
    gen = {"name": "g", "backend": "openai", "openai": {"model": "m", "api_key_env": "MY_KEY"}}
    cfg = {"judge": {"backend": "rubric", "fused_backend": "openai", "openai": {"api_key_env": "JUDGE_KEY"}},
           "generate": {"generators": [gen, {"name": "free", "backend": "openai", "openai": {"model": "m", "api_key_env": None}},
                                       {"name": "local", "backend": "hf", "model": "x"}]}}
    lines = missing_api_keys(cfg, environ={})
    assert len(lines) == 2 and "judge" in lines[0] and "$JUDGE_KEY" in lines[0] and "generator g " in lines[1]
    assert missing_api_keys(cfg, environ={"MY_KEY": "k", "JUDGE_KEY": "k"}) == []
    assert missing_api_keys({"judge": {"backend": "rubric"}}, environ={}) == []


def test_argument_builders_quote_what_they_are_given():
    """The helpers that build several arguments at once quote each value: a path with a space, or a
    spec that reached them around the schema, stays one word."""
    from types import SimpleNamespace

    from llmblend.fuser.snake import data_args

    class Inputs(SimpleNamespace):  # a rule's `input` as the helpers read it (attributes and keys())
        def keys(self):
            return vars(self).keys()
    from llmblend.generate.rules import model_option
    from llmblend.ranker.rules import method_args

    odd = "dir:/my models/m; touch x"
    cfg = {"models": {"m": {"spec": odd}}}
    assert shlex.split(model_option(cfg, "data/r", {"backend": "hf", "model": "m"})) == ["--model", odd]
    words = shlex.split(method_args("clm_scoring", Inputs(), {"clm": odd}))
    assert words == ["--clm-model", odd]
    words = shlex.split(method_args("consensus", Inputs(), {"encoder": odd}))
    assert words == ["--encoder", odd]
    words = shlex.split(method_args("simcls", Inputs(model="data/a b/model"), {}))
    assert words == ["--model", "simcls=data/a b/model"]
    words = shlex.split(method_args("pairranker-consensus", Inputs(part_pairranker="r/p x.jsonl",
                                                                   part_consensus="r/c;.jsonl"), {}))
    assert words == ["--rankings", "pairranker=r/p x.jsonl", "--rankings", "consensus=r/c;.jsonl"]
    inp = {"split_train": "d/t x.jsonl", "split_val": "d/v.jsonl", "rankings_train": "r/t;.jsonl", "rankings_val": "r/v.jsonl"}
    words = shlex.split(data_args({"fuser": {"ranker": "pairranker"}}, inp))
    assert words == ["--split", "train=d/t x.jsonl", "--split", "val=d/v.jsonl",
                     "--rankings", "train=r/t;.jsonl", "--rankings", "val=r/v.jsonl"]
