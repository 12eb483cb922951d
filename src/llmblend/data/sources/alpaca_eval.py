"""AlpacaEval: 805 prompts from five sources, with the text-davinci-003 answer as the reference.

The reference is `output_1` of the GPT-4 annotation files (the text the judge actually saw; the
upstream `text_davinci_003/model_outputs.json` of the pinned commit is a later, different text).
Every instruction must carry exactly one reference across the listed models' annotation files;
instructions are joined after whitespace normalisation, since a few differ only in spacing.
"""

from __future__ import annotations

import hashlib

from llmblend.data.fetch import fetch
from llmblend.errors import InputError
from llmblend.io import read_json

BASE = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval"


def norm_instruction(text: str) -> str:
    return " ".join(text.split())


def stable_id(dataset: str, instruction: str) -> str:
    h = hashlib.sha1(norm_instruction(instruction).encode("utf-8")).hexdigest()[:12]
    return f"alpaca_eval/{dataset}/{h}"


def annotation_url(spec: dict, model: str) -> str:
    return f"{spec.get('base_url', BASE)}/{spec['commit']}/results/{model}/alpaca_eval_gpt4/annotations.json"


def outputs_url(spec: dict, model: str) -> str:
    return f"{spec.get('base_url', BASE)}/{spec['commit']}/results/{model}/model_outputs.json"


def load(spec: dict, ctx: dict):
    refs: dict[str, dict] = {}
    order: list[str] = []
    for model in spec["models"]:
        path = fetch(annotation_url(spec, model), ctx["mirror"])
        rows = read_json(path)
        if not isinstance(rows, list):
            raise InputError(path, problem="expected a JSON list of annotations")
        for i, row in enumerate(rows):
            for field in ("instruction", "output_1", "dataset"):
                if not isinstance(row.get(field), str):
                    raise InputError(path, None, f"[{i}].{field}", "missing or not a string")
            key = norm_instruction(row["instruction"])
            ref = row["output_1"]
            if key in refs:
                if refs[key]["output"] != ref:
                    raise InputError(path, None, f"[{i}].output_1",
                                     "reference differs from the one in an earlier annotation file")
                continue
            refs[key] = {"id": stable_id(row["dataset"], row["instruction"]), "instruction": key, "input": "",
                         "output": ref, "source": f"alpaca_eval/{row['dataset']}", "_where": f"{path}[{i}]"}
            order.append(key)
    for key in order:
        rec = refs[key]
        yield {k: v for k, v in rec.items() if k != "_where"}, rec["_where"]
