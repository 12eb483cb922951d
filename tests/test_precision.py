"""`auto` precision (llmblend.models.precision): one rule, resolved where the job runs, recorded."""

import copy
import json

import pytest
import yaml

from llmblend.analysis.report import precision_notes
from llmblend.config import load_config, restrict, validate
from llmblend.errors import ConfigError
from llmblend.models import precision

ALPACA = ["params.yaml", "config/alpaca_eval.yaml"]
AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 avx512_vnni\n"
AMX = "processor\t: 0\nflags\t\t: avx2 avx512f amx_bf16 amx_tile\n"


@pytest.fixture
def cpu(tmp_path, monkeypatch):
    """A CPU with the given /proc/cpuinfo text and no GPU."""
    monkeypatch.setattr(precision, "_cuda_bf16", lambda: None)
    precision.native_bf16.cache_clear()

    def make(text):
        path = tmp_path / f"cpuinfo-{abs(hash(text))}"
        path.write_text(text)
        return path
    yield make
    precision.native_bf16.cache_clear()


def _auto_config():
    cfg = load_config(["params.yaml"])  # fp32 everywhere: no `auto`, nothing resolved
    assert "_precision" not in cfg
    cfg = copy.deepcopy(cfg)
    cfg["ranker"]["train"]["autocast"] = cfg["ranker"]["infer"]["autocast"] = "auto"
    cfg["fuser"]["train"]["bf16"] = cfg["fuser"]["dtype"] = "auto"
    cfg["generate"]["generators"].append({"name": "g-hf", "backend": "hf", "model": "smollm2", "hf": {"dtype": "auto"}})
    return cfg


def test_auto_becomes_bf16_only_on_native_bf16(cpu):
    for text, native in ((AVX2, False), (AVX512_BF16, True), (AMX, True)):
        cfg = _auto_config()
        decided = precision.resolve_auto(cfg, cpuinfo=cpu(text))
        assert decided["native_bf16"] is native and cfg["_precision"] is decided
        want = {"ranker.train.autocast": "bfloat16" if native else None,
                "ranker.infer.autocast": "bfloat16" if native else None,
                "fuser.train.bf16": native,
                "fuser.dtype": "bfloat16" if native else "float32",
                "generate.generators.4.hf.dtype": "bfloat16" if native else "float32"}
        assert decided["resolved"] == want
        assert (cfg["ranker"]["train"]["autocast"], cfg["ranker"]["infer"]["autocast"], cfg["fuser"]["train"]["bf16"],
                cfg["fuser"]["dtype"], cfg["generate"]["generators"][4]["hf"]["dtype"]) == tuple(want.values())
        assert ("avx512_bf16" in decided["evidence"] or "amx_bf16" in decided["evidence"])
        assert ("without" in decided["evidence"]) is (not native)
    # a value that is not `auto` is the profile's choice, whatever the machine
    cfg = load_config(["params.yaml"])
    cfg["ranker"]["infer"]["autocast"] = "bfloat16"
    assert precision.resolve_auto(cfg, cpuinfo=cpu(AVX2)) is None and cfg["ranker"]["infer"]["autocast"] == "bfloat16"


def test_the_api_resolves_auto_by_the_same_rule(cpu, monkeypatch):
    read_flags = precision.cpu_flags
    for text, want in ((AVX2, None), (AVX512_BF16, "bfloat16"), (AMX, "bfloat16")):
        flags = read_flags(cpu(text))
        monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=None, flags=flags: flags)
        precision.native_bf16.cache_clear()  # asked once a process: here once per CPU
        assert precision.resolve("auto", "ranker.infer.autocast") == want
        assert precision.resolve("auto", "fuser.train.bf16") is (want is not None)
        assert precision.resolve("auto", "fuser.dtype") == (want or "float32")
        assert precision.resolve(None, "ranker.infer.autocast") is None
        assert precision.resolve("bfloat16", "ranker.infer.autocast") == "bfloat16"
        assert precision.resolve(False, "fuser.train.bf16") is False
    with pytest.raises(KeyError):  # a setting AUTO_SETTINGS does not list has no `auto`
        precision.resolve("auto", "ranker.max_length")


def test_alpaca_eval_profile_says_auto_and_jobs_get_a_value():
    raw = yaml.safe_load(open("config/alpaca_eval.yaml"))
    assert raw["ranker"]["train"]["autocast"] == raw["ranker"]["infer"]["autocast"] == "auto"
    assert raw["fuser"]["train"]["bf16"] == raw["fuser"]["dtype"] == "auto"
    assert raw["fuser"]["aggregator"]["generator"]["hf"]["dtype"] == "auto"
    cfg = load_config(ALPACA)
    resolved = cfg["_precision"]["resolved"]
    assert set(resolved) == {"ranker.train.autocast", "ranker.infer.autocast", "fuser.train.bf16", "fuser.dtype",
                             "fuser.aggregator.generator.hf.dtype"}
    assert "auto" not in [cfg["ranker"]["train"]["autocast"], cfg["ranker"]["infer"]["autocast"],
                          cfg["fuser"]["train"]["bf16"], cfg["fuser"]["dtype"],
                          cfg["fuser"]["aggregator"]["generator"]["hf"]["dtype"]]
    # a stage that declares only its own keys still reads what `auto` became (an ambient key)
    assert restrict(cfg, ["ranker.train"])["_precision"] == cfg["_precision"]
    # the default and ci profiles stay fp32 by their own settings: no rule, nothing machine-dependent
    assert "_precision" not in load_config(["params.yaml", "config/ci.yaml"])


def test_the_schema_takes_auto_and_refuses_other_words():
    cfg = load_config(["params.yaml"])
    cfg.pop("_files")
    good = copy.deepcopy(cfg)
    good["fuser"]["train"]["bf16"] = "auto"
    validate(good, {}, ["test"])
    for path in (("ranker", "train", "autocast"), ("ranker", "infer", "autocast"), ("fuser", "dtype"),
                 ("fuser", "train", "bf16")):
        bad = copy.deepcopy(cfg)
        node = bad
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = "automatic"
        with pytest.raises(ConfigError, match=".".join(path)):
            validate(bad, {}, ["test"])


def test_report_says_what_auto_became(tmp_path):
    (tmp_path / "train_ranker").mkdir()
    decided = {"rule": precision.RULE, "native_bf16": False, "evidence": "CPU flags without avx512_bf16 or amx_bf16",
               "resolved": {"ranker.train.autocast": None}}
    (tmp_path / "train_ranker" / "pairranker.json").write_text(json.dumps(
        {"precision": {"autocast": None, "auto": decided}}))
    (tmp_path / "train_ranker" / "simcls.json").write_text(json.dumps({"precision": {"autocast": "bfloat16",
                                                                                     "auto": None}}))
    html = "".join(precision_notes({"_precision": decided}, tmp_path))
    assert "ranker.train.autocast = None" in html and "without avx512_bf16" in html
    assert "pairranker: autocast none (fp32)" in html and "simcls" not in html  # simcls's was no `auto`
    assert precision_notes({}, tmp_path) == []


def test_ranking_and_training_run_auto_in_the_precision_of_the_rule(cpu, monkeypatch):
    """The Python API's `auto` (e.g. Blender(autocast="auto")) reaches the forward passes resolved: bf16
    autocast on a native-bf16 CPU, plain fp32 elsewhere."""
    import torch

    from llmblend.ranker import infer
    from llmblend.ranker.train import Batcher

    read_flags = precision.cpu_flags
    for text, native in ((AVX2, False), (AVX512_BF16, True)):
        flags = read_flags(cpu(text))
        monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=None, flags=flags: flags)
        precision.native_bf16.cache_clear()
        seen = []

        def model_fn(ids, mask, pos):
            seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
            return [0.0] * len(ids)
        infer._run_batches([[1, 2, 3], [4, 5]], None, model_fn, 0, 64, 8, "cpu", "t", "pair", autocast="auto")
        assert seen and all(s is native for s in seen)
        batcher = Batcher.__new__(Batcher)  # only its precision context is asked
        batcher.cfg = {"autocast": "auto"}
        with batcher.autocast("cpu"):
            assert torch.is_autocast_enabled("cpu") is native
