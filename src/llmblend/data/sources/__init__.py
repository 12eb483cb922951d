"""Source adapters: each turns one raw source into records of the common format.

An adapter is a function `load(spec, ctx) -> iterator of (record, where)`, where `where` is
"file:line" (or a URL) so that a bad record can be reported where it came from. The record has at
least id, instruction, input, output and source; `records.check_record` validates it.
"""

from llmblend.data.sources import alpaca_eval, demo, jsonl, mixinstruct, paper

ADAPTERS = {
    "demo": demo.load,
    "jsonl": jsonl.load,
    "alpaca_eval": alpaca_eval.load,
    "mixinstruct": mixinstruct.load,
    "alpaca_gpt4": paper.load_alpaca_gpt4,
    "dolly": paper.load_dolly,
    "gpt4all": paper.load_gpt4all,
    "sharegpt": paper.load_sharegpt,
}
