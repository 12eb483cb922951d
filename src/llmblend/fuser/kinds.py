"""The three kinds of blended answer, in one place: each is a file of one candidate per test record
(results/<run>/fuser/test_<kind>.jsonl) that score_fused, judge_fused and evaluate treat alike.

- fused: the trained GenFuser's answer (rule fuse_candidates; the paper's LLM-Blender row);
- verified: the fused answer or the PairRanker's top-1, whichever the PairRanker prefers (rule verify_fused);
- aggregated: a chat model's synthesis of the top K, no training (rule aggregate_candidates).

`model` is the answer's name in the judge's pair keys; `method` the Table 2 row (evaluate.method_names
may rename it; the GenFuser row keeps its own settings, evaluate.fused_model / fused_method).
"""

from __future__ import annotations

KINDS = {
    "fused": {"model": "llm-blender", "method": "PR (K=3) + GF"},
    "verified": {"model": "llm-blender-verified", "method": "PR + GF, verified"},
    "aggregated": {"model": "llm-aggregator", "method": "PR (K=3) + LLM aggregator"},
}


def enabled_kinds(config: dict) -> list[str]:
    """The kinds a profile makes: fused with a `fuser` section, verified with fuser.verify (it needs a
    ranker to verify with), aggregated with fuser.aggregator."""
    fcfg = config.get("fuser")
    if not fcfg:
        return []
    out = ["fused"]
    if fcfg.get("verify") and config.get("ranker"):
        out.append("verified")
    if fcfg.get("aggregator"):
        out.append("aggregated")
    return out
