"""The paper's four source adapters, field by field, against the reference's construction
(yuchenlin/LLM-Blender `llm_blender/download_dataset/get_mixinstruct.py`, the same at 4594f09 and at HEAD):

- GPT4All (nomic-ai/gpt4all_prompt_generations): rows whose source is laion/unified_chip2 or
  unified_chip2; id = source + "/" + count of that source so far; instruction "", input = prompt,
  output = response.
- Dolly (HuggingFaceH4/databricks_dolly_15k): id = "dolly_15k/" + category + "/" + count of that
  category; instruction, input, output as named (databricks' own file names them context/response).
- Alpaca-GPT4: id = "itwgpt4/" + row number; instruction, input, output as named.
- ShareGPT: [human, gpt, ...] gives instruction "", input = conv[0], output = conv[1];
  [gpt|system, human, gpt, ...] gives instruction = conv[0], input = conv[1], output = conv[2];
  any other shape, or an output holding a ban word, is left out; id = "sharegpt/" + conversation id.

Every text is a distinct sentinel, so a swapped or dropped field shows.
"""

from __future__ import annotations

import json

from llmblend.data.sources.paper import load_alpaca_gpt4, load_dolly, load_gpt4all, load_sharegpt


def records(loader, path, seed=42):
    """(kept records sorted by id, drop reasons) of one adapter run on a local copy."""
    got = [rec for rec, _ in loader({"path": str(path)}, {"seed": seed, "mirror": None})]
    return sorted((r for r in got if "_drop" not in r), key=lambda r: r["id"]), sorted(r["_drop"] for r in got
                                                                                         if "_drop" in r)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gpt4all_adapter_fields(tmp_path):
    path = write_jsonl(tmp_path / "gpt4all.jsonl", [
        {"prompt": "P0", "response": "R0", "source": "unified_chip2"},
        {"prompt": "P1", "response": "R1", "source": "stackoverflow"},
        {"prompt": "P2", "response": "R2", "source": "laion/unified_chip2"},
        {"prompt": "P3", "response": "R3", "source": "unified_chip2"}])
    kept, dropped = records(load_gpt4all, path)
    assert kept == [
        {"id": "laion/unified_chip2/0", "instruction": "", "input": "P2", "output": "R2", "source": "gpt4all"},
        {"id": "unified_chip2/0", "instruction": "", "input": "P0", "output": "R0", "source": "gpt4all"},
        {"id": "unified_chip2/1", "instruction": "", "input": "P3", "output": "R3", "source": "gpt4all"}]
    assert dropped == ["gpt4all_other_source"]


def test_dolly_adapter_fields(tmp_path):
    h4 = write_jsonl(tmp_path / "h4.jsonl", [
        {"instruction": "I0", "input": "X0", "output": "O0", "category": "open_qa"},
        {"instruction": "I1", "input": "", "output": "O1", "category": "closed_qa"},
        {"instruction": "I2", "input": "X2", "output": "O2", "category": "open_qa"}])
    kept, dropped = records(load_dolly, h4)
    assert kept == [
        {"id": "dolly_15k/closed_qa/0", "instruction": "I1", "input": "", "output": "O1", "source": "dolly"},
        {"id": "dolly_15k/open_qa/0", "instruction": "I0", "input": "X0", "output": "O0", "source": "dolly"},
        {"id": "dolly_15k/open_qa/1", "instruction": "I2", "input": "X2", "output": "O2", "source": "dolly"}]
    assert dropped == []
    # databricks' own file: the context is the input, the response the output
    own = write_jsonl(tmp_path / "databricks.jsonl", [
        {"instruction": "I9", "context": "C9", "response": "O9", "category": "summarization"}])
    kept, _ = records(load_dolly, own)
    assert kept == [{"id": "dolly_15k/summarization/0", "instruction": "I9", "input": "C9", "output": "O9",
                     "source": "dolly"}]


def test_alpaca_gpt4_adapter_fields(tmp_path):
    path = tmp_path / "alpaca_gpt4.json"
    path.write_text(json.dumps([{"instruction": "I0", "input": "", "output": "O0"},
                                {"instruction": "I1", "input": "X1", "output": "O1"}]), encoding="utf-8")
    kept, _ = records(load_alpaca_gpt4, path)
    assert kept == [{"id": "itwgpt4/0", "instruction": "I0", "input": "", "output": "O0", "source": "alpaca_gpt4"},
                    {"id": "itwgpt4/1", "instruction": "I1", "input": "X1", "output": "O1", "source": "alpaca_gpt4"}]


def turn(who, text):
    return {"from": who, "value": text}


def test_sharegpt_adapter_fields(tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([
        {"id": "a", "conversations": [turn("human", "H1"), turn("gpt", "G1"), turn("human", "H1b"), turn("gpt", "G1b")]},
        {"id": "b", "conversations": [turn("gpt", "C2"), turn("human", "H2"), turn("gpt", "G2")]},
        {"id": "c", "conversations": [turn("system", "S3"), turn("human", "H3"), turn("gpt", "G3")]},
        {"id": "d", "conversations": [turn("human", "H4")]},
        {"id": "e", "conversations": [turn("human", "H5"), turn("human", "H5b"), turn("gpt", "G5")]},
        {"id": "f", "conversations": [turn("human", "H6"), turn("gpt", "Of course! G6")]},
    ]), encoding="utf-8")
    kept, dropped = records(load_sharegpt, path)
    assert kept == [
        {"id": "sharegpt/a", "instruction": "", "input": "H1", "output": "G1", "source": "sharegpt"},
        {"id": "sharegpt/b", "instruction": "C2", "input": "H2", "output": "G2", "source": "sharegpt"},
        {"id": "sharegpt/c", "instruction": "S3", "input": "H3", "output": "G3", "source": "sharegpt"}]
    assert dropped == ["sharegpt_ban_word", "sharegpt_one_turn", "sharegpt_other_shape"]
