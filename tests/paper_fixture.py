"""A MixInstruct-style fixture: the paper's four sources in miniature, written as their public files
are laid out, with the cases the reference construction (get_mixinstruct.py) decides on: ShareGPT
conversation shapes and ban words, repeated prompts, length edges, sources of other kinds.

Lengths are counted with a word-level tokenizer that, like LLaMA's, adds <s> in front: a text of
n words (punctuation marks count as words) is n + 1 tokens with the special tokens, n without.
Plain json/yaml only, so the same fixture can be fed to older versions of the data stage.
"""

from __future__ import annotations

import json
from pathlib import Path

FILLER = "lakes hold fresh water in wide basins across the land and feed rivers that run to the sea".split()


def text(n: int, start: int = 0) -> str:
    """n words of filler (none holds a ShareGPT ban word), starting at word `start`."""
    return " ".join(FILLER[(start + i) % len(FILLER)] for i in range(n))


def make_tokenizer_dir(d: Path) -> Path:
    """A word-level tokenizer that adds <s> (as LLaMA's does), saved as a dir: model spec."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", unk_token="<unk>")
    d.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(d)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return d


GPT4ALL = [  # (source, prompt, response)
    ("unified_chip2", text(6, 0), text(20, 1)),
    ("laion/unified_chip2", text(6, 0), text(21, 2)),  # the prompt of the row above
    ("stackoverflow", text(6, 3), text(20, 3)),  # not a GPT4All-LAION row
    ("unified_chip2", text(4, 4), text(30, 4)),  # prompt: 5 tokens with <s>
    ("unified_chip2", text(8, 5), text(9, 5)),  # output: 10 tokens with <s>
    ("unified_chip2", text(8, 6), text(10, 6)),  # output: 11
    ("unified_chip2", text(7, 7), text(126, 7)),  # output: 127
    ("unified_chip2", text(7, 8), text(127, 8)),  # output: 128
    ("laion/unified_chip2", text(126, 9), text(15, 9)),  # prompt: 127
    ("laion/unified_chip2", text(127, 10), text(15, 10)),  # prompt: 128
    ("unified_chip2", text(9, 11), text(18, 11)),
    ("unified_chip2", text(10, 12), text(19, 12)),
]
DOLLY = [  # (category, instruction, input, output)
    ("open_qa", text(5, 0) + "?", "", text(20, 1)),
    ("closed_qa", "Summarize:", text(8, 2), text(12, 2)),
    ("open_qa", text(5, 0) + "?", "", text(25, 3)),  # the prompt of the first row
    ("brainstorming", text(3, 4), "", text(15, 4)),  # prompt: 4 tokens with <s>
    ("closed_qa", "Name one:", "lakes", text(14, 5)),  # instruction + input: 4 words, 5 tokens with <s>
    ("general_qa", text(6, 6), "", text(16, 6)),
    ("open_qa", text(7, 7) + "?", "", text(17, 7)),
    ("closed_qa", "lakes hold", "fresh water", text(14, 8)),  # joined with nothing between: 3 words, 4 tokens
]
ALPACA_GPT4 = [  # (instruction, input, output)
    ("Give a tip.", "", text(20, 0)),
    ("Rewrite:", text(6, 1), text(12, 1)),
    (text(6, 2), "", text(22, 2)),
    ("Give a tip.", "", text(24, 3)),  # the prompt of the first row
    (text(7, 4), "", text(9, 4)),  # output: 10 tokens with <s>
    (text(8, 5), "", text(40, 5)),
    (text(3, 6), "", text(8, 6)),  # prompt and output both too short
]
SHAREGPT = [  # (id, [(from, value), ...])
    ("c0", [("human", "Tell me about lakes."), ("gpt", text(20, 0))]),
    # the case: a split conversation that starts with the end of an earlier answer
    ("c1", [("gpt", "Context: " + text(8, 1)), ("human", "Tell me about lakes."), ("gpt", "Lakes are " + text(15, 2))]),
    ("c2", [("system", "Be brief."), ("human", text(6, 3) + "?"), ("gpt", text(14, 3))]),
    ("c3", [("human", "Hi there")]),
    ("c4", [("human", text(6, 4)), ("human", text(6, 5)), ("gpt", text(15, 6))]),
    ("c5", [("human", text(6, 7)), ("gpt", "Of course! " + text(15, 7))]),
    ("c6", [("human", text(6, 8)), ("gpt", "As an AI I can help. " + text(12, 8))]),
    ("c7", [("human", text(6, 9)), ("gpt", "I know the " + text(12, 9))]),
    ("c8", [("human", text(6, 10)), ("gpt", "Yeah, " + text(12, 10))]),
    ("c9", [("gpt", "Earlier answer"), ("human", text(6, 11)), ("gpt", text(16, 11)), ("human", "More?"),
            ("gpt", text(12, 0))]),
    ("c10", [("human", text(6, 12)), ("gpt", text(18, 12))]),
]
# per-source draws in the fixture's proportions (the paper: 100k / 15k / 52k / 50k)
SAMPLES = {"gpt4all": 9, "dolly": 6, "alpaca_gpt4": 5, "sharegpt": 5}
# the paper's bounds in data.filters terms (config/paper.yaml)
PAPER_FILTERS = {"dedupe": True, "min_prompt_len": 5, "max_prompt_len": 127, "min_output_len": 11,
                 "max_output_len": 127}


def write_sources(d: Path) -> dict[str, Path]:
    """The four source files under d; returns type -> path."""
    d.mkdir(parents=True, exist_ok=True)
    paths = {t: d / f"{t}.{ext}" for t, ext in (("gpt4all", "jsonl"), ("dolly", "jsonl"), ("alpaca_gpt4", "json"),
                                                ("sharegpt", "json"))}
    paths["gpt4all"].write_text("".join(json.dumps({"prompt": p, "response": r, "source": s}) + "\n"
                                        for s, p, r in GPT4ALL))
    paths["dolly"].write_text("".join(json.dumps({"instruction": i, "input": x, "output": o, "category": c}) + "\n"
                                      for c, i, x, o in DOLLY))
    paths["alpaca_gpt4"].write_text(json.dumps([{"instruction": i, "input": x, "output": o} for i, x, o in ALPACA_GPT4]))
    paths["sharegpt"].write_text(json.dumps([{"id": cid, "conversations": [{"from": f, "value": v} for f, v in turns]}
                                             for cid, turns in SHAREGPT]))
    return paths


def sources(paths: dict, order, samples: dict) -> list[dict]:
    """data.sources entries reading the local copies, in `order`, with `samples` where given."""
    out = []
    for t in order:
        spec = {"type": t, "name": t, "path": str(paths[t])}
        if t in samples:
            spec["sample"] = samples[t]
        out.append(spec)
    return out
