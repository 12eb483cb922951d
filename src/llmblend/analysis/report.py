"""results/<run>/report.html: one self-contained page (no external files, no scripts).

Tables from the evaluate stage's Markdown/CSV files, figures embedded as base64 PNG, captions from
workflow/report/*.rst (the same captions `snakemake --report` shows), the merged config, the
evaluate summary (what was missing or left out) and the per-rule benchmark times found under
results/<run>/benchmarks/ when the report is built.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd
import yaml

from llmblend.analysis.tables import LOWER_IS_BETTER, NOT_RANKED, TABLE2_COLUMNS, TABLE3_COLUMNS
from llmblend.errors import InputError
from llmblend.io import write_text

FIGURES = ["figure1", "gpt_rank_distribution", "correlation_heatmap", "tradeoff"]
OPTIONAL_FIGURES = ["select_curve"]  # drawn when the evaluate summary names it
# each figure beside the table it illustrates
FIGURES_OF = {"table2": ["figure1", "gpt_rank_distribution", "tradeoff", "select_curve"],
              "table3": ["correlation_heatmap"]}
STYLE = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #bbb;padding:2px 6px;text-align:right}
th{background:#eee} td:first-child,td:nth-child(2){text-align:left}
figure{margin:1em 0 2em} img{max-width:100%} figcaption,.caption{color:#444;font-size:0.9em}
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto;font-size:0.8em}
td.best{background:#e3f2e3;font-weight:bold}
.headline{border:2px solid #4a7;padding:0.6em 1em;margin:1em 0;background:#f4faf4}
.headline table{font-size:1em;margin:0.5em 0}
details{margin:0.5em 0 1.5em} summary{cursor:pointer;color:#245}
"""


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def best_cells(header: list[str], body: list[list[str]]) -> set[tuple[int, int]]:
    """(row, column) of the best value of each ranked column, as displayed: the lowest GPT-Rank and
    footrule, the highest of the others. The Analysis rows (oracles, which read the labels) compete
    with no one."""
    rows = [i for i, r in enumerate(body) if not (header[0] == "category" and r[0] == "Analysis")]
    cells = set()
    for j, col in enumerate(header):
        if col not in TABLE2_COLUMNS + TABLE3_COLUMNS or col in NOT_RANKED:
            continue
        vals = {i: v for i in rows if (v := _number(body[i][j])) is not None}
        if vals:
            best = (min if col in LOWER_IS_BETTER else max)(vals.values())
            cells |= {(i, j) for i, v in vals.items() if v == best}
    return cells


def table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and body rows of the first pipe table in a Markdown text."""
    lines = [line for line in text.splitlines() if line.lstrip().startswith("|")]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    if not rows:
        return [], []
    return rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]


def markdown_to_html(text: str, mark_best: bool = False) -> str:
    """The small Markdown subset our table files use: '#' headings, pipe tables, paragraphs.
    mark_best: the best value of each ranked column gets class 'best' (bold, shaded)."""
    out, table = [], []

    def flush():
        if table:
            header, body = table_rows("\n".join(table))
            best = best_cells(header, body) if mark_best else set()

            def td(i, j, c):
                return f"<td class='best'>{_esc(c)}</td>" if (i, j) in best else f"<td>{_esc(c)}</td>"

            out.append("<table><thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in header) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(td(i, j, c) for j, c in enumerate(r)) + "</tr>"
                                           for i, r in enumerate(body)) + "</tbody></table>")
            table.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{_esc(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_esc(line)}</p>")
    flush()
    return "\n".join(out)


def _caption(captions: Path, name: str) -> str:
    path = captions / f"{name}.rst"
    return path.read_text(encoding="utf-8").strip() if path.exists() else ""


def _need(path: Path) -> Path:
    if not path.exists():
        raise InputError(path, problem="missing (run the evaluate stage first)")
    return path


def benchmark_table(bench_dir: Path) -> pd.DataFrame:
    """One row per benchmark file (Snakemake's `benchmark:` TSV): rule, wall seconds, peak memory."""
    rows = []
    for f in sorted(bench_dir.rglob("*.tsv")) if bench_dir.exists() else []:
        df = pd.read_csv(f, sep="\t")
        if df.empty or "s" not in df:
            continue
        rows.append({"rule": str(f.relative_to(bench_dir).with_suffix("")), "seconds": round(float(df["s"].iloc[-1]), 2),
                     "max_rss_mb": round(float(df["max_rss"].iloc[-1]), 1) if "max_rss" in df and
                     pd.api.types.is_number(df["max_rss"].iloc[-1]) else None})
    return pd.DataFrame(rows, columns=["rule", "seconds", "max_rss_mb"])


def _ci(text: str) -> tuple[float, float] | None:
    parts = [_number(x) for x in text.strip("[] ").split(",")] if text.strip() else []
    return (parts[0], parts[1]) if len(parts) == 2 and None not in parts else None


def _versus(a: dict, b: dict) -> str:
    """One clause: does row a's GPT-Rank differ from row b's beyond the noise of their 95% intervals?"""
    if not (a["ci"] and b["ci"]):
        return f"{a['method']} vs {b['method']}: no interval to compare"
    if a["ci"][1] < b["ci"][0] or a["ci"][0] > b["ci"][1]:
        way = "better" if a["rank"] < b["rank"] else "worse"
        return f"{a['method']} ranks {way} than {b['method']} beyond the noise (95% intervals apart)"
    return f"{a['method']} and {b['method']} differ within the noise (95% intervals overlap)"


def headline(table2_md: str) -> str:
    """What the run found, first: the best single LLM, the PairRanker and each LLM-Blender row with
    their GPT-Rank and 95% CI, and one sentence on whether they differ beyond the noise (read from
    the intervals: apart = outside the noise; overlapping = within it, a conservative reading)."""
    header, body = table_rows(table2_md)
    col = {c: j for j, c in enumerate(header)}
    need = {"category", "method", "gpt_rank", "gpt_rank 95% CI", "n judged"}
    if not need <= set(col):
        return "<div class='headline' id='headline'><p>No GPT-Rank in Table 2: no headline.</p></div>"
    rows = [{"category": r[col["category"]], "method": r[col["method"]], "rank": _number(r[col["gpt_rank"]]),
             "ci": _ci(r[col["gpt_rank 95% CI"]]), "n": r[col["n judged"]]} for r in body]
    llms = [r for r in rows if r["category"] == "LLMs" and r["rank"] is not None]
    best = min(llms, key=lambda r: r["rank"]) if llms else None
    shown = [r for r in rows if r["rank"] is not None and (r["method"] == "PairRanker" or r["category"] == "LLM-Blender")]
    lines = [("best single LLM", best)] if best else []
    lines += [("PairRanker" if r["category"] != "LLM-Blender" else "LLM-Blender", r) for r in shown]
    cells = "".join(f"<tr><td>{_esc(role)}</td><td>{_esc(r['method'])}</td><td>{r['rank']:.2f}</td>"
                    f"<td>{_esc('[%.2f, %.2f]' % r['ci']) if r['ci'] else ''}</td><td>{_esc(r['n'])}</td></tr>"
                    for role, r in lines)
    ranker = next((r for role, r in lines if role == "PairRanker"), None)
    pairs = [(r, best) for _, r in lines[1:]] if best else []
    pairs += [(r, ranker) for role, r in lines if role == "LLM-Blender" and ranker]
    verdicts = [_versus(a, b) for a, b in pairs]
    n = best["n"] if best else "?"
    sentence = (f"On {n} judged test prompts: " + "; ".join(verdicts) + "." if verdicts
                else "No ranker or fused row to compare with the best single LLM.")
    return ("<div class='headline' id='headline'><h2>What this run found</h2>"
            "<table><thead><tr><th>role</th><th>method</th><th>GPT-Rank (lower is better)</th><th>95% CI</th>"
            f"<th>n judged</th></tr></thead><tbody>{cells}</tbody></table><p id='verdict'>{_esc(sentence)}</p></div>")


def _figure(figs: Path, captions: Path, name: str) -> str:
    data = base64.b64encode(_need(figs / f"{name}.png").read_bytes()).decode("ascii")
    return (f"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_esc(_caption(captions, name))}</figcaption></figure>")


def precision_notes(cfg: dict, reports: Path) -> list[str]:
    """What a profile's `auto` precision became (llmblend.models.precision), on the machine of this job
    and in each trained ranker's report; nothing for a profile without `auto`."""
    decided = cfg.get("_precision")
    if not decided:
        return []
    out = [f"<h3 id='precision'>Precision</h3><p>{_esc(decided['rule'])}. This machine: {_esc(decided['evidence'])}, "
           "so " + _esc(", ".join(f"{k} = {v}" for k, v in decided["resolved"].items())) + ".</p>"]
    used = []
    for path in sorted((reports / "train_ranker").glob("*.json")):
        auto = (json.loads(path.read_text(encoding="utf-8")).get("precision") or {})
        if auto.get("auto"):
            used.append(f"{path.stem}: autocast {auto['autocast'] or 'none (fp32)'} ({auto['auto']['evidence']})")
    if used:
        out.append("<p>The rankers were trained with " + _esc("; ".join(used)) + ".</p>")
    return out


def build_report(cfg: dict, results, captions, out) -> Path:
    results, captions = Path(results), Path(captions)
    tables, figs = results / "tables", results / "figures"
    summary = json.loads(_need(tables / "summary.json").read_text(encoding="utf-8"))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>LLM-Blender reproduction: {_esc(cfg['run'])}</title><style>{STYLE}</style></head><body>",
             f"<h1>LLM-Blender reproduction: run <code>{_esc(cfg['run'])}</code></h1>",
             f"<p class='caption'>{_esc(_caption(captions, 'report'))}</p>",
             headline(_need(tables / "table2.md").read_text(encoding="utf-8"))]
    counts = summary.get("counts", {})
    parts.append(f"<p>{counts.get('test_examples', '?')} test examples; roles: Vicuna = "
                 f"<code>{_esc(summary['roles']['vicuna'])}</code>, Open Assistant = "
                 f"<code>{_esc(summary['roles']['oa'])}</code>; GPT-Rank pool: "
                 f"{_esc(', '.join(summary['gpt_rank_pool']))}.</p>")
    # the best-of-N schedule curve: only where this evaluation drew it (a stale file is not shown)
    drawn = FIGURES + [name for name in OPTIONAL_FIGURES if summary.get(name)]
    for name, title in (("table2", "Table 2: main results"), ("table3", "Table 3: correlation with GPT-Rank")):
        parts.append(f"<h2 id='{name}'>{title}</h2><p class='caption'>{_esc(_caption(captions, name))}</p>")
        md = _need(tables / f"{name}.md").read_text(encoding="utf-8").split("\n", 1)[1]
        parts.append(markdown_to_html(md, mark_best=True))
        parts.append("<p class='caption'>Shaded: the best value of each column (lowest GPT-Rank and footrule, "
                     "highest otherwise; the Analysis oracles are left out).</p>")
        parts += [_figure(figs, captions, f) for f in FIGURES_OF[name] if f in drawn]
        readings = pd.read_csv(_need(tables / f"{name}_readings.csv"), keep_default_na=True)
        parts.append(f"<details><summary>Other readings of the ambiguous choices ({len(readings)} rows)</summary>")
        parts.append(readings.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.2f}", border=0))
        parts.append("</details>")
        parts.append(markdown_to_html(_need(tables / f"{name}_vs_paper.md").read_text(encoding="utf-8")))
    # the whole ranking, beside its pick: how each method orders the judge's pairs, by the better answer's length
    parts.append(f"<h2 id='pair_order'>How each ranking orders the judge's pairs</h2>"
                 f"<p class='caption'>{_esc(_caption(captions, 'pair_order'))}</p>")
    parts.append(markdown_to_html(_need(tables / "pair_order.md").read_text(encoding="utf-8").split("\n", 1)[1]))
    placed = {f for figs_of in FIGURES_OF.values() for f in figs_of}
    if [f for f in drawn if f not in placed]:  # a figure with no table of its own still shows
        parts.append("<h2 id='figures'>Other figures</h2>")
        parts += [_figure(figs, captions, f) for f in drawn if f not in placed]
    parts.append("<h2 id='counts'>What was missing or left out</h2>")
    parts.append(pd.DataFrame(sorted(counts.items()), columns=["count", "value"]).to_html(index=False, border=0))
    if summary.get("candidates_without_llm_row"):
        parts.append(f"<p>Candidates in the data without an LLM row: "
                     f"{_esc(', '.join(summary['candidates_without_llm_row']))}</p>")
    if summary.get("why_not_comparable"):
        parts.append(f"<p>Not compared with the paper: {_esc(summary['why_not_comparable'])}</p>")
    if summary.get("metrics_stage_report") is not None:
        parts.append("<h3>Metrics stage report</h3><pre>"
                     + _esc(json.dumps(summary["metrics_stage_report"], indent=2, ensure_ascii=False)) + "</pre>")
    parts.append("<h2 id='benchmarks'>Per-rule benchmark times</h2>")
    bench = benchmark_table(results / "benchmarks")
    parts.append(bench.to_html(index=False, na_rep="", border=0) if len(bench)
                 else "<p>No benchmark files under benchmarks/ yet.</p>")
    shown = {k: v for k, v in cfg.items() if not k.startswith("_")}
    parts.append("<h2 id='config'>Configuration</h2><p>Files: " + _esc(", ".join(cfg.get("_files", []))) + "</p>")
    parts.append("<pre>" + _esc(yaml.safe_dump(shown, sort_keys=False, allow_unicode=True)) + "</pre>")
    parts += precision_notes(cfg, results / "reports")
    parts.append("</body></html>\n")
    write_text(out, "\n".join(parts))
    return Path(out)
