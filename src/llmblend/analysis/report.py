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

from llmblend.errors import InputError
from llmblend.io import write_text

FIGURES = ["figure1", "gpt_rank_distribution", "correlation_heatmap", "tradeoff"]
OPTIONAL_FIGURES = ["select_curve"]  # drawn when the evaluate summary names it
STYLE = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #bbb;padding:2px 6px;text-align:right}
th{background:#eee} td:first-child,td:nth-child(2){text-align:left}
figure{margin:1em 0 2em} img{max-width:100%} figcaption,.caption{color:#444;font-size:0.9em}
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto;font-size:0.8em}
"""


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def markdown_to_html(text: str) -> str:
    """The small Markdown subset our table files use: '#' headings, pipe tables, paragraphs."""
    out, table = [], []

    def flush():
        if table:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in rows[0]) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>"
                                           for r in body) + "</tbody></table>")
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


def build_report(cfg: dict, results, captions, out) -> Path:
    results, captions = Path(results), Path(captions)
    tables, figs = results / "tables", results / "figures"
    summary = json.loads(_need(tables / "summary.json").read_text(encoding="utf-8"))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>LLM-Blender reproduction: {_esc(cfg['run'])}</title><style>{STYLE}</style></head><body>",
             f"<h1>LLM-Blender reproduction: run <code>{_esc(cfg['run'])}</code></h1>",
             f"<p class='caption'>{_esc(_caption(captions, 'report'))}</p>"]
    counts = summary.get("counts", {})
    parts.append(f"<p>{counts.get('test_examples', '?')} test examples; roles: Vicuna = "
                 f"<code>{_esc(summary['roles']['vicuna'])}</code>, Open Assistant = "
                 f"<code>{_esc(summary['roles']['oa'])}</code>; GPT-Rank pool: "
                 f"{_esc(', '.join(summary['gpt_rank_pool']))}.</p>")
    for name, title in (("table2", "Table 2: main results"), ("table3", "Table 3: correlation with GPT-Rank")):
        parts.append(f"<h2 id='{name}'>{title}</h2><p class='caption'>{_esc(_caption(captions, name))}</p>")
        md = _need(tables / f"{name}.md").read_text(encoding="utf-8").split("\n", 1)[1]
        parts.append(markdown_to_html(md))
        readings = pd.read_csv(_need(tables / f"{name}_readings.csv"), keep_default_na=True)
        parts.append("<h3>Other readings of the ambiguous choices</h3>")
        parts.append(readings.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.2f}", border=0))
        parts.append(markdown_to_html(_need(tables / f"{name}_vs_paper.md").read_text(encoding="utf-8")))
    parts.append("<h2 id='figures'>Figures</h2>")
    # the best-of-N schedule curve: only where this evaluation drew it (a stale file is not shown)
    optional = [name for name in OPTIONAL_FIGURES if summary.get(name)]
    for name in FIGURES + optional:
        png = _need(figs / f"{name}.png")
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{_esc(_caption(captions, name))}</figcaption></figure>")
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
    parts.append("</body></html>\n")
    write_text(out, "\n".join(parts))
    return Path(out)
