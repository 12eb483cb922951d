"""The ranking methods of `ranker.methods`, in one table (no torch: parsing the Snakefile reads it).

One row per method: how `ranker.stage.rank_split` computes it (`kind`), the trained ranker it needs
(`model`), what else it reads (`reads`: "judge", the split's judge labels; "clm", the causal LM
`ranker.clm_scorer`; "encoder", the sentence encoder `ranker.consensus.encoder`; "rankings", the
rankings of its `parts`, methods of the same list whose scores it combines), the config keys of its
ranking job (`keys`: the rule reruns it when one of them changes, and its command can read no other
ranker key: llmblend.config.restrict), its forward passes per prompt of N candidates (`passes`: the
ones the stage writes as `n_forward`, and the cost plan's; for bubble and the select schedules the
most they spend), the comparison-matrix aggregation (`aggregate`, pair_full), the best-of-N schedule
(`schedule`, select) and `Blender.rank`'s name for it (`mode`).

Read by workflow/rules/rank.smk and ranker/rules.py (jobs, inputs, arguments, config keys), the stage,
the cost plan (workflow/cost.py), `Blender` and the config check: a new method is a row here (and a
branch in `rank_split` only when its kind is new).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llmblend.errors import ConfigError
from llmblend.ranker.aggregate import max_logits, max_wins

# the trained rankers, in the order that gives each its seed offset (seed + index)
TRAINED = ("pairranker", "simcls", "summareranker")
# the keys of every method that runs a trained ranker: its batch sizes, autocast, bubble's seeded order
INFER_KEYS = ("seed", "ranker.infer")
ORACLE = "oracle-"


def _none(n: int, rcfg: dict) -> int:
    return 0


def _full(n: int, rcfg: dict) -> int:
    return n * (n - 1)


@dataclass(frozen=True)
class Method:
    kind: str
    model: str | None = None
    reads: str | None = None
    keys: tuple[str, ...] = ()
    passes: Callable[[int, dict], int] = _none
    aggregate: Callable | None = None
    schedule: str | None = None
    mode: str | None = None
    parts: tuple[str, ...] = ()


def _schedule_passes(schedule: str, keys: tuple[str, ...]) -> Callable[[int, dict], int]:
    def passes(n: int, rcfg: dict) -> int:
        from llmblend.ranker.select import max_forward

        return max_forward(schedule, n, **select_settings(keys, rcfg))
    return passes


_SAMPLED_KEYS = INFER_KEYS + ("ranker.select",)
_RACE_KEYS = INFER_KEYS + ("ranker.race",)
METHODS = {
    # the full N(N-1) comparison matrix, computed once for both aggregations (rule rank_test_full)
    "pairranker": Method("pair_full", "pairranker", keys=INFER_KEYS, passes=_full, aggregate=max_logits,
                         mode="max_logits"),
    "pairranker-maxwins": Method("pair_full", "pairranker", keys=INFER_KEYS, passes=_full, aggregate=max_wins,
                                 mode="max_wins"),
    # one seeded pass, each comparison in both orders: only the top-1 is meaningful
    "pairranker-bubble": Method("bubble", "pairranker", keys=INFER_KEYS, passes=lambda n, r: 2 * max(n - 1, 0),
                                mode="bubble"),
    # best-of-N schedules (llmblend.ranker.select); `sampled` reads ranker.select, `race` ranker.race,
    # knockout has no setting
    "pairranker-sampled": Method("select", "pairranker", keys=_SAMPLED_KEYS, schedule="sampled",
                                 passes=_schedule_passes("sampled", _SAMPLED_KEYS)),
    "pairranker-race": Method("select", "pairranker", keys=_RACE_KEYS, schedule="race",
                              passes=_schedule_passes("race", _RACE_KEYS)),
    "pairranker-knockout": Method("select", "pairranker", keys=INFER_KEYS, schedule="knockout",
                                  passes=_schedule_passes("knockout", INFER_KEYS)),
    # SimCLS encodes the source once and each candidate once; SummaReranker each (source, candidate)
    "simcls": Method("simcls", "simcls", keys=INFER_KEYS, passes=lambda n, r: n + 1),
    "summareranker": Method("summareranker", "summareranker", keys=INFER_KEYS, passes=lambda n, r: n),
    "random": Method("random", keys=("seed",)),
    "longest": Method("longest"),  # the candidate texts alone decide
    "clm_scoring": Method("clm_scoring", reads="clm", passes=lambda n, r: n,
                          keys=("ranker.clm_scorer", "ranker.clm_max_len", "ranker.source_join", "ranker.infer.autocast")),
    # MBR over the answers themselves: each one's mean cosine similarity to the prompt's other answers
    # (sentence embeddings): the answer the others agree with; no training, no labels (llmblend.ranker.consensus)
    "consensus": Method("consensus", reads="encoder", passes=lambda n, r: n, mode="consensus",
                        keys=("ranker.consensus.encoder", "ranker.consensus.max_len")),
    # the PairRanker's MaxLogits and the consensus, each z-scored per prompt, summed with weights 1 and
    # ranker.consensus.weight; reads the two rankings and runs no model (the cost plan counts 0 passes),
    # its n_forward is what the pick cost: the sum of its parts' n_forward
    "pairranker-consensus": Method("combine", reads="rankings", keys=("ranker.consensus.weight",),
                                   parts=("pairranker", "consensus"), mode="max_logits+consensus"),
    # oracles: the judge labels or the metric scores decide, no ranker setting does
    "oracle-gpt_rank": Method("oracle_judge", reads="judge"),
}
ORACLE_METRIC = Method("oracle_metric")  # oracle-<metric>: any metric of the scored records


def method(name: str) -> Method:
    if name in METHODS:
        return METHODS[name]
    if name.startswith(ORACLE) and len(name) > len(ORACLE):
        return ORACLE_METRIC
    raise ConfigError(f"config key 'ranker.methods': unknown method {name!r} "
                      f"(one of {', '.join(METHODS)}, {ORACLE}<metric>)")


def method_kind(name: str) -> str:
    return method(name).kind


def model_for(name: str) -> str | None:
    """Which trained ranker a method needs (None: no trained model)."""
    return method(name).model


def select_settings(keys: tuple[str, ...], rcfg: dict) -> dict:
    """A schedule's settings: `ranker.select` or `ranker.race`, whichever its method declares (else
    the schedule's own defaults)."""
    for key in ("ranker.select", "ranker.race"):
        if key in keys:
            return dict(rcfg.get(key.split(".", 1)[1]) or {})
    return {}


def passes_per_prompt(names: list[str], n: int, rcfg: dict) -> int:
    """Forward passes of one job ranking a prompt's N candidates with `names`: the pair_full methods
    share one matrix."""
    rows = [method(m) for m in names]
    full = [r for r in rows if r.kind == "pair_full"]
    return (full[0].passes(n, rcfg) if full else 0) + sum(r.passes(n, rcfg) for r in rows if r.kind != "pair_full")


def trained_rankers(rcfg: dict) -> list[str]:
    """The rankers the profile trains: the PairRanker always (its top K on train/val is the fuser's
    data) unless a released one is imported (ranker.pretrained), and each one a method needs."""
    need = {"pairranker"} | {model_for(m) for m in rcfg["methods"] if model_for(m)}
    return sorted(need - ({"pairranker"} if rcfg.get("pretrained") else set()))

