"""`llmblend evaluate` (tables, figures, DVC metrics and plots) and `llmblend report` (report.html)."""

from llmblend.cli import config_of
from llmblend.errors import LLMBlendError


def register(sub, add_common):
    p = sub.add_parser("evaluate", help="scored candidates + judge labels + rankings + fused answers -> "
                                        "Table 2, Table 3, figures, headline metrics, plots")
    add_common(p)
    p.add_argument("--scored", required=True, help="data/<run>/scored/test.jsonl")
    p.add_argument("--judge", help="data/<run>/judge/test.jsonl (candidate-vs-candidate labels)")
    p.add_argument("--ranking", action="append", default=[], metavar="METHOD=PATH",
                   help="one ranking method's test rankings; repeat for each method")
    p.add_argument("--fused", action="append", default=[], metavar="[KIND=]PATH",
                   help="blended answers with scores, one LLM-Blender row each; KIND fused (default: the "
                        "GenFuser's), verified or aggregated; repeat for each kind")
    p.add_argument("--fused-judge", action="append", default=[], metavar="[KIND=]PATH",
                   help="data/<run>/judge/<kind>_test.jsonl (that kind's answer vs each candidate)")
    p.add_argument("--metrics-report", help="results/<run>/metrics/candidate_scores.json (which metrics were not "
                                            "computed, and why)")
    p.add_argument("--matrices", help="data/<run>/rankings/pairranker/test.matrices.npz (rule rank_test_full): "
                                      "the best-of-N schedule curve, plots/select_curve.csv and figures/select_curve.*")
    p.add_argument("--out-dir", required=True, help="results/<run>: tables/, figures/, metrics/, plots/ go here")
    p.set_defaults(func=run_evaluate)

    r = sub.add_parser("report", help="results/<run> -> one self-contained report.html")
    add_common(r)
    r.add_argument("--results", required=True, help="results/<run> (tables/, figures/, benchmarks/)")
    r.add_argument("--captions", required=True, help="folder of figure/table captions (workflow/report)")
    r.add_argument("--out", required=True, help="results/<run>/report.html")
    r.set_defaults(func=run_report)


def _rankings(pairs):
    out = {}
    for item in pairs:
        method, sep, path = item.partition("=")
        if not sep or not method or not path:
            raise LLMBlendError(f"--ranking {item!r}: expected METHOD=PATH")
        if method in out:
            raise LLMBlendError(f"--ranking: method {method!r} given twice")
        out[method] = path
    return out


def _kinds(values, option):
    """[KIND=]PATH values -> {kind: path}; a bare path is the GenFuser's answers (kind fused)."""
    from llmblend.fuser.kinds import KINDS

    out = {}
    for item in values:
        kind, sep, path = item.partition("=")
        if not sep or kind not in KINDS:
            kind, path = "fused", item
        if kind in out:
            raise LLMBlendError(f"--{option}: kind {kind!r} given twice")
        out[kind] = path
    return out


def run_evaluate(args):
    from llmblend.analysis.evaluate import evaluate

    evaluate(config_of(args), args.scored, args.out_dir, judge=args.judge, rankings=_rankings(args.ranking),
             fused=_kinds(args.fused, "fused"), fused_judge=_kinds(args.fused_judge, "fused-judge"),
             metrics_report=args.metrics_report,
             matrices=args.matrices)


def run_report(args):
    from llmblend.analysis.report import build_report

    build_report(config_of(args), args.results, args.captions, args.out)
