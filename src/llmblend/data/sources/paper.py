"""The four MixInstruct sources of the paper, loaded from their public locations.

Each adapter follows the reference construction (`download_dataset/get_mixinstruct.py`, see
docs/paper-mapping.md) and accepts `path:` to read a local copy of the same file instead, which is
how the tests exercise them offline. Rows that the reference filters out (ShareGPT ban words,
GPT4All rows of other sources) are yielded as drops with a reason, so the manifest counts them.
"""

from __future__ import annotations

import random

from llmblend.data.fetch import fetch
from llmblend.errors import InputError, LLMBlendError
from llmblend.io import read_json

ALPACA_GPT4_URL = "https://raw.githubusercontent.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM/{commit}/data/alpaca_gpt4_data.json"
SHAREGPT_URL = ("https://huggingface.co/datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/resolve/{revision}/"
                "ShareGPT_V3_unfiltered_cleaned_split_no_imsorry.json")
# the reference drops ShareGPT answers containing any of these (lower-cased) strings
SHAREGPT_BAN = ["i'm sorry", "sure", "ok", "yes", "no", "as an ai", "i cannot", "i can't"]


def _hf_rows(spec: dict, ctx: dict):
    """Rows of a hub dataset (or of its local copy under `path`), with a located name."""
    import datasets

    try:
        if spec.get("path"):
            ds = datasets.load_dataset("json", data_files=spec["path"], split="train")
            where = spec["path"]
        else:
            ds = datasets.load_dataset(spec["hub_id"], split=spec.get("split", "train"), revision=spec.get("revision"))
            where = f"hf://{spec['hub_id']}@{spec.get('revision', 'main')}"
    except Exception as e:  # datasets raises many types for an unreachable hub
        raise LLMBlendError(f"source {spec.get('path') or spec['hub_id']} cannot be loaded "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    for i, row in enumerate(ds):
        yield row, f"{where}[{i}]"


def _str(row, field, where):
    v = row.get(field)
    if not isinstance(v, str):
        raise InputError(where, None, field, "missing or not a string")
    return v


def load_alpaca_gpt4(spec: dict, ctx: dict):
    path = spec.get("path") or fetch(ALPACA_GPT4_URL.format(commit=spec["commit"]), ctx["mirror"], spec.get("sha256"))
    rows = read_json(path)
    for i, row in enumerate(rows):
        where = f"{path}[{i}]"
        yield {"id": f"itwgpt4/{i}", "instruction": _str(row, "instruction", where), "input": _str(row, "input", where),
               "output": _str(row, "output", where), "source": "alpaca_gpt4"}, where


def load_dolly(spec: dict, ctx: dict):
    for i, (row, where) in enumerate(_hf_rows(spec, ctx)):
        inp = row.get("input", row.get("context", ""))
        out = row.get("output", row.get("response"))
        yield {"id": f"dolly_15k/{row.get('category', 'na')}/{i}", "instruction": _str(row, "instruction", where),
               "input": inp if isinstance(inp, str) else "", "output": out if isinstance(out, str) else None,
               "source": "dolly"}, where


def load_gpt4all(spec: dict, ctx: dict):
    keep = set(spec.get("keep_sources", ["laion/unified_chip2", "unified_chip2"]))
    rows = []
    for row, where in _hf_rows(spec, ctx):
        if row.get("source") in keep:
            rows.append((row, where))
        else:
            yield {"_drop": "gpt4all_other_source"}, where
    random.Random(ctx["seed"]).shuffle(rows)
    n = spec.get("sample", len(rows))
    for j, (row, where) in enumerate(rows):
        if j >= n:
            yield {"_drop": "gpt4all_beyond_sample"}, where
            continue
        src = "laion" if row["source"].startswith("laion") else "unified_chip2"
        yield {"id": f"{src}/{j}", "instruction": "", "input": _str(row, "prompt", where),
               "output": _str(row, "response", where), "source": "gpt4all"}, where


def load_sharegpt(spec: dict, ctx: dict):
    path = spec.get("path") or fetch(SHAREGPT_URL.format(revision=spec["revision"]), ctx["mirror"], spec.get("sha256"))
    rows = read_json(path)
    n = spec.get("sample", len(rows))
    kept = 0
    for i, conv in enumerate(rows):
        where = f"{path}[{i}]"
        turns = conv.get("conversations") or []
        human = next((t.get("value") for t in turns if t.get("from") == "human"), None)
        gpt = next((t.get("value") for t in turns if t.get("from") == "gpt"), None)
        if not isinstance(human, str) or not isinstance(gpt, str):
            yield {"_drop": "sharegpt_no_exchange"}, where
            continue
        if any(b in gpt.lower() for b in SHAREGPT_BAN):
            yield {"_drop": "sharegpt_ban_word"}, where
            continue
        if kept >= n:
            yield {"_drop": "sharegpt_beyond_sample"}, where
            continue
        kept += 1
        yield {"id": f"sharegpt/{conv.get('id', i)}", "instruction": "", "input": human, "output": gpt,
               "source": "sharegpt"}, where
