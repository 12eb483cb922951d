"""The four MixInstruct sources of the paper, loaded from their public locations.

Each adapter follows the reference construction (`download_dataset/get_mixinstruct.py`, the same at
4594f09 and at HEAD; docs/paper-mapping.md has the line-by-line mapping): the reference's ids, its
row selection, then a shuffle with the seed (the reference re-seeds 42 before each source) and the
first `sample` rows. `path:` reads a local copy of the same file instead, which is how the tests
exercise them offline. Rows the reference leaves out are yielded as drops with a reason, so the
manifest counts them. Mixing, filtering and splitting follow `data.compat`.
"""

from __future__ import annotations

import random

from llmblend.data.fetch import fetch
from llmblend.errors import InputError, LLMBlendError
from llmblend.io import read_json

ALPACA_GPT4_URL = "https://raw.githubusercontent.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM/{commit}/data/alpaca_gpt4_data.json"
SHAREGPT_URL = ("https://huggingface.co/datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/resolve/{revision}/"
                "ShareGPT_V3_unfiltered_cleaned_split_no_imsorry.json")
# the order get_mixinstruct.py mixes the sources in (its split shuffles them in that order)
MIX_ORDER = ("gpt4all", "dolly", "alpaca_gpt4", "sharegpt")
# get_mixinstruct.py drops a ShareGPT answer that contains any of these, lower-cased and as substrings
# (so "no" drops every answer with "know" or "not" in it: few ShareGPT answers survive)
SHAREGPT_BAN = ["i'm sorry", "i'am here", "i'am ready", "sure", "okay", "ok", "yes", "no", "yeah", "nope", "yep",
                "yup", "no problem", "no worries", "how can i", "of course"]


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


def _sample(rows: list, spec: dict, ctx: dict, name: str):
    """The reference's draw from one source: shuffle with the seed, keep the first `sample` (all
    without one); the rest are counted as `<name>_beyond_sample`."""
    random.Random(ctx["seed"]).shuffle(rows)
    n = spec.get("sample") or len(rows)
    for j, (rec, where) in enumerate(rows):
        yield (rec, where) if j < n else ({"_drop": f"{name}_beyond_sample"}, where)


def _counter_id(counts: dict, prefix: str) -> str:
    """`<prefix>/<n>`, n counting the rows of that prefix in file order (the reference's ids)."""
    n = counts.get(prefix, 0)
    counts[prefix] = n + 1
    return f"{prefix}/{n}"


def load_alpaca_gpt4(spec: dict, ctx: dict):
    path = spec.get("path") or fetch(ALPACA_GPT4_URL.format(commit=spec["commit"]), ctx["mirror"], spec.get("sha256"))
    rows = []
    for i, row in enumerate(read_json(path)):
        where = f"{path}[{i}]"
        rows.append(({"id": f"itwgpt4/{i}", "instruction": _str(row, "instruction", where),
                      "input": _str(row, "input", where), "output": _str(row, "output", where),
                      "source": "alpaca_gpt4"}, where))
    yield from _sample(rows, spec, ctx, "alpaca_gpt4")


def load_dolly(spec: dict, ctx: dict):
    rows, counts = [], {}
    for row, where in _hf_rows(spec, ctx):
        # HuggingFaceH4/databricks_dolly_15k names them input/output, databricks' own file context/response
        inp = row.get("input", row.get("context", ""))
        out_field = "output" if "output" in row else "response"
        rows.append(({"id": _counter_id(counts, f"dolly_15k/{row.get('category', 'na')}"),
                      "instruction": _str(row, "instruction", where), "input": inp if isinstance(inp, str) else "",
                      "output": _str(row, out_field, where), "source": "dolly"}, where))
    yield from _sample(rows, spec, ctx, "dolly")


def load_gpt4all(spec: dict, ctx: dict):
    keep = set(spec.get("keep_sources", ["laion/unified_chip2", "unified_chip2"]))
    rows, counts = [], {}
    for row, where in _hf_rows(spec, ctx):
        if row.get("source") not in keep:
            yield {"_drop": "gpt4all_other_source"}, where
            continue
        # "laion/unified_chip2/7": the reference counts per source value, in file order
        rows.append(({"id": _counter_id(counts, row["source"]), "instruction": "", "input": _str(row, "prompt", where),
                      "output": _str(row, "response", where), "source": "gpt4all"}, where))
    yield from _sample(rows, spec, ctx, "gpt4all")


def sharegpt_exchange(turns: list, where: str):
    """(instruction, input, output) of a conversation as get_mixinstruct.py reads it, or a drop reason:
    [human, gpt, ...] gives ("", human, gpt); [gpt|system, human, gpt, ...] gives (context, human, gpt)
    (the split conversations of ShareGPT V3 may start with the end of an earlier answer)."""
    if not isinstance(turns, list):
        raise InputError(where, None, "conversations", "missing or not a list")
    for k, t in enumerate(turns[:3]):
        if not isinstance(t, dict) or not isinstance(t.get("from"), str) or not isinstance(t.get("value"), str):
            raise InputError(where, None, f"conversations[{k}]", "expected {from: str, value: str}")
    if len(turns) < 2:
        return "sharegpt_one_turn"
    roles = [t["from"] for t in turns[:3]]
    if roles[:2] == ["human", "gpt"]:
        return "", turns[0]["value"], turns[1]["value"]
    if len(turns) >= 3 and roles[0] in ("gpt", "system") and roles[1:] == ["human", "gpt"]:
        return turns[0]["value"], turns[1]["value"], turns[2]["value"]
    return "sharegpt_other_shape"


def load_sharegpt(spec: dict, ctx: dict):
    path = spec.get("path") or fetch(SHAREGPT_URL.format(revision=spec["revision"]), ctx["mirror"], spec.get("sha256"))
    rows = []
    for i, conv in enumerate(read_json(path)):
        where = f"{path}[{i}]"
        if not isinstance(conv, dict):
            raise InputError(where, None, "conversations", "expected an object with id and conversations")
        got = sharegpt_exchange(conv.get("conversations"), where)
        if isinstance(got, str):
            yield {"_drop": got}, where
            continue
        instruction, inp, out = got
        if any(b in out.lower() for b in SHAREGPT_BAN):
            yield {"_drop": "sharegpt_ban_word"}, where
            continue
        rows.append(({"id": f"sharegpt/{conv.get('id', i)}", "instruction": instruction, "input": inp,
                      "output": out, "source": "sharegpt"}, where))
    for rec, where in _sample(rows, spec, ctx, "sharegpt"):
        # the reference keeps an empty turn until its length filter drops it (after this draw, so the
        # draw is the same); a record with nothing to answer or no answer cannot enter the project
        if "_drop" not in rec and (not rec["output"].strip() or not (rec["instruction"] + rec["input"]).strip()):
            rec = {"_drop": "sharegpt_empty_turn"}
        yield rec, where
