"""Tables as CSV (the exact contract columns), Markdown and LaTeX, and the side-by-side with the paper."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from llmblend.analysis.tables import PAIR_ORDER_COLUMNS, TABLE2_COLUMNS, TABLE3_COLUMNS
from llmblend.io import atomic_path, write_text

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.yaml")
CSV_DECIMALS = 4
SHOW_DECIMALS = 2


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _fmt(v, decimals=SHOW_DECIMALS) -> str:
    v = _num(v)
    return "" if v is None else f"{v:.{decimals}f}"


def _ci(ci, decimals=SHOW_DECIMALS) -> str:
    if not ci or any(_num(x) is None for x in ci):
        return ""
    return f"[{ci[0]:.{decimals}f}, {ci[1]:.{decimals}f}]"


def table2_frame(rows: list[dict]) -> pd.DataFrame:
    data = [{"category": r["category"], "method": r["method"],
             **{c: _num(r["values"][c]) for c in TABLE2_COLUMNS}} for r in rows]
    return pd.DataFrame(data, columns=["category", "method"] + TABLE2_COLUMNS)


def table3_frame(rows: list[dict]) -> pd.DataFrame:
    data = [{"method": r["method"], **{c: _num(r["values"][c]) for c in TABLE3_COLUMNS}} for r in rows]
    return pd.DataFrame(data, columns=["method"] + TABLE3_COLUMNS)


def write_csv(df: pd.DataFrame, path) -> None:
    # a metric not computed stays an empty cell (pandas writes None/NaN as "")
    with atomic_path(path) as tmp:
        df.round(CSV_DECIMALS).to_csv(tmp, index=False, lineterminator="\n")


def _md_table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out) + "\n"


def _latex(df: pd.DataFrame, caption: str, label: str) -> str:
    shown = df.copy()
    for c in shown.columns:
        if c not in ("category", "method"):
            shown[c] = [_fmt(v) for v in shown[c]]
    fmt = "".join("l" if c in ("category", "method") else "r" for c in shown.columns)
    return shown.to_latex(index=False, caption=caption, label=label, escape=True, column_format=fmt)


def write_table2(rows, out_dir: Path, note: str) -> None:
    df = table2_frame(rows)
    write_csv(df, out_dir / "table2.csv")
    header = ["category", "method"] + TABLE2_COLUMNS + ["gpt_rank 95% CI", "n judged"]
    lines = [[r["category"], r["method"]] + [_fmt(r["values"][c]) for c in TABLE2_COLUMNS]
             + [_ci(r.get("ci", {}).get("gpt_rank")), str(r["n_gpt"])] for r in rows]
    write_text(out_dir / "table2.md", f"# Table 2: main results\n\n{note}\n\n" + _md_table(header, lines))
    write_text(out_dir / "table2.tex", _latex(df, "Main results (Table 2 of LLM-Blender, reproduced)", "tab:table2"))


def write_table3(rows, out_dir: Path, note: str) -> None:
    df = table3_frame(rows)
    write_csv(df, out_dir / "table3.csv")
    header = ["method"] + TABLE3_COLUMNS + [f"{c} 95% CI" for c in TABLE3_COLUMNS] + ["n judged"]
    lines = [[r["method"]] + [_fmt(r["values"][c]) for c in TABLE3_COLUMNS]
             + [_ci(r["ci"][c]) for c in TABLE3_COLUMNS] + [str(r["n"])] for r in rows]
    write_text(out_dir / "table3.md", f"# Table 3: correlation with GPT-Rank\n\n{note}\n\n" + _md_table(header, lines))
    tex = _latex(df, "Correlation of ranking methods and metrics with GPT-Rank (Table 3, reproduced)", "tab:table3")
    write_text(out_dir / "table3.tex", tex)


def write_pair_order(rows, out_dir: Path, note: str) -> None:
    """tables/pair_order.{csv,md}: each ranking's share of the judge's ordered pairs, with CIs."""
    shares = PAIR_ORDER_COLUMNS[1::2]
    data = [{"method": r["method"], **{c: _num(r["values"][c]) for c in PAIR_ORDER_COLUMNS},
             **{f"{c}_{end}": None if r["ci"].get(c) is None else _num(r["ci"][c][i])
                for c in shares for i, end in enumerate(("lo", "hi"))}} for r in rows]
    write_csv(pd.DataFrame(data, columns=["method"] + PAIR_ORDER_COLUMNS
                           + [f"{c}_{end}" for c in shares for end in ("lo", "hi")]), out_dir / "pair_order.csv")
    header = ["method", "pairs", "% right [95% CI]", "longer-better pairs", "% right [95% CI]",
              "shorter-better pairs", "% right [95% CI]"]

    def share(r, c):
        v = _fmt(r["values"][c], 1)
        return f"{v} {_ci(r['ci'].get(c), 1)}".strip() if v else ""

    lines = [[r["method"]] + [x for count, c in zip(PAIR_ORDER_COLUMNS[::2], shares)
                              for x in (_fmt(r["values"][count], 0), share(r, c))] for r in rows]
    write_text(out_dir / "pair_order.md", f"# How each ranking orders the judge's pairs\n\n{note}\n\n"
               + _md_table(header, lines))


def write_readings(readings: list[tuple[str, list[dict]]], columns: list[str], path: Path, key_cols) -> None:
    data = []
    for label, rows in readings:
        for r in rows:
            data.append({"reading": label, **{k: r[k] for k in key_cols}, **{c: _num(r["values"][c]) for c in columns}})
    write_csv(pd.DataFrame(data, columns=["reading"] + list(key_cols) + columns), path)


def load_paper() -> dict:
    return yaml.safe_load(PAPER_NUMBERS.read_text(encoding="utf-8"))


def write_vs_paper(kind: str, rows: list[dict], st: dict, comparable: bool, why_not: str, path: Path) -> None:
    """Our number, the paper's and the difference, for rows whose names match the paper's rows."""
    paper = load_paper()[kind]
    title = {"table2": "Table 2", "table3": "Table 3"}[kind]
    head = f"# {title}: ours vs the paper\n\nPaper numbers: src/llmblend/analysis/paper_numbers.yaml.\n\n"
    if not comparable:
        write_text(path, head + f"Not comparable: {why_not}\n")
        return
    names = st["paper"].get("names") or {}
    prow = {r["method"]: r["values"] for r in paper["rows"]}
    lines, unmatched = [], []
    for r in rows:
        pname = names.get(r["method"], r["method"])
        if pname not in prow:
            unmatched.append(r["method"])
            continue
        for c, pv in zip(paper["columns"], prow[pname]):
            ours = _num(r["values"].get(c))
            ci = r.get("ci", {}).get(c)
            diff = "" if ours is None or pv is None else f"{ours - pv:+.2f}"
            inside = ""
            if ci and pv is not None and all(_num(x) is not None for x in ci):
                inside = "yes" if ci[0] <= pv <= ci[1] else "no"
            lines.append([r["method"], pname, c, _fmt(pv) if pv is not None else "N/A",
                          _fmt(ours), diff, _ci(ci), inside])
    body = _md_table(["our row", "paper row", "column", "paper", "ours", "difference", "our 95% CI",
                      "paper inside CI"], lines)
    tail = ""
    if unmatched:
        tail = "\nRows of ours without a paper row: " + ", ".join(unmatched) + "\n"
    missing = sorted(set(prow) - {names.get(r["method"], r["method"]) for r in rows})
    if missing:
        tail += "\nPaper rows without a row of ours: " + ", ".join(missing) + "\n"
    write_text(path, head + body + tail)
