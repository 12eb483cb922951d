"""The `import` backend: candidates that others released, joined to the split records.

- `alpaca_eval`: `results/<model>/model_outputs.json` of the pinned tatsu-lab/alpaca_eval commit
  (read from the mirror), joined by whitespace-normalised instruction.
- `mixinstruct`: the released MixInstruct file of the split, joined by id (then by normalised
  instruction + input); the candidate of the configured model keeps its released `scores`.

A record with no answer (two AlpacaEval models answered 803 of the 805 prompts) keeps its place
in the candidate list as an empty candidate flagged `missing` (so every record has one candidate
per generator, in the same order); it is listed in the shard report and in join_report.json.
"""

from __future__ import annotations

from collections import Counter

from llmblend.config import mirror_root
from llmblend.errors import ConfigError, InputError
from llmblend.generate.backend import GenerationBackend
from llmblend.io import iter_jsonl, read_json


def norm(text: str) -> str:
    return " ".join(text.split())


def _source_spec(cfg: dict, source_type: str) -> dict:
    for spec in cfg["data"]["sources"]:
        if spec["type"] == source_type:
            return spec
    raise ConfigError(f"an import of {source_type!r} needs a data source of that type in data.sources")


class ImportBackend(GenerationBackend):
    def __init__(self, gen: dict, cfg: dict, split: str | None):
        self.gen, self.cfg = gen, cfg
        imp = gen["import"]
        self.source, self.model = imp["source"], imp["model"]
        self.dups = Counter()
        if self.source == "alpaca_eval":
            self.by_key, self.where = self._load_alpaca_eval()
        elif self.source == "mixinstruct":
            self.by_key, self.where = self._load_mixinstruct(split)
        else:
            raise ConfigError(f"generator {gen['name']}: unknown import source {self.source!r}")

    def _load_alpaca_eval(self):
        from llmblend.data.fetch import fetch
        from llmblend.data.sources.alpaca_eval import outputs_url

        spec = _source_spec(self.cfg, "alpaca_eval")
        path = fetch(outputs_url(spec, self.model), mirror_root(self.cfg))
        rows = read_json(path)
        if not isinstance(rows, list):
            raise InputError(path, problem="expected a JSON list of model outputs")
        out = {}
        for i, row in enumerate(rows):
            for field in ("instruction", "output"):
                if not isinstance(row.get(field), str):
                    raise InputError(path, None, f"[{i}].{field}", "missing or not a string")
            key = norm(row["instruction"])
            if key in out:
                self.dups["duplicate_instruction"] += 1  # the first answer is kept
                continue
            out[key] = {"text": row["output"], "decoding_method": "released", "scores": {}}
        return out, str(path)

    def _load_mixinstruct(self, split):
        from llmblend.data.sources.mixinstruct import released_path

        spec = _source_spec(self.cfg, "mixinstruct")
        if split not in spec["files"]:
            raise ConfigError(f"generator {self.gen['name']}: the mixinstruct source has no {split!r} file")
        path = released_path(spec, split, mirror_root(self.cfg))
        out = {}
        for lineno, rec in iter_jsonl(path, {"id": str, "candidates": list}):
            cand = next((c for c in rec["candidates"] if isinstance(c, dict) and c.get("model") == self.model), None)
            if cand is None:
                continue
            if not isinstance(cand.get("text"), str):
                raise InputError(path, lineno, f"candidates[{self.model}].text", "missing or not a string")
            value = {"text": cand["text"], "decoding_method": cand.get("decoding_method", "released"),
                     "scores": cand.get("scores") or {}}
            out[rec["id"]] = value
            out.setdefault(("text", norm(rec.get("instruction", "")), norm(rec.get("input", ""))), value)
        return out, str(path)

    def lookup(self, rec: dict):
        if self.source == "alpaca_eval":
            return self.by_key.get(norm(rec["instruction"]))
        return self.by_key.get(rec["id"]) or self.by_key.get(("text", norm(rec["instruction"]), norm(rec["input"])))

    def batches(self, records):
        for i in range(0, len(records), 256):
            yield records[i:i + 256]

    def run_batch(self, batch):
        out = []
        for rec in batch:
            hit = self.lookup(rec)
            flags = []
            if hit is None:
                flags = ["missing"]
                hit = {"text": "", "decoding_method": "released", "scores": {}}
            elif not hit["text"].strip():
                flags = ["empty"]
            cand = {"model": self.gen["name"], "decoding_method": hit["decoding_method"], "text": hit["text"],
                    "n_prompt_tokens": None, "n_tokens": None, "logprobs": hit["scores"].get("logprobs"),
                    "flags": flags, "base_model": self.model, "source": self.source}
            if self.source == "mixinstruct":
                cand["scores"] = hit["scores"]
            out.append((rec["id"], cand))
        return out

    def report(self, records) -> dict:
        failures = [{"id": r["id"], "instruction": r["instruction"][:200],
                     "reason": f"no answer of {self.model} in {self.where}"}
                    for r in records if self.lookup(r) is None]
        return {"joined": len(records) - len(failures), "join_failures": failures, "source_file": self.where,
                "source_duplicates": dict(self.dups)}
