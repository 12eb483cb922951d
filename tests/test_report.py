"""report.html: self-contained, and it renders in a headless browser with its tables and images."""

import base64
from html import escape as html_escape
import re
import shutil
import subprocess

import pytest

from llmblend.analysis.report import build_report, markdown_to_html
from llmblend.errors import InputError
from test_analysis import CFG, curve_matrices, make_artifacts, run_eval

CAPTIONS = __import__("pathlib").Path(__file__).resolve().parents[1] / "workflow" / "report"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    out, _, _ = run_eval(tmp)
    bench = out / "benchmarks" / "rank_candidates"
    bench.mkdir(parents=True)
    (bench / "pairranker.tsv").write_text("s\th:m:s\tmax_rss\tmax_vms\n12.5\t0:00:12\t812.3\t900.1\n")
    cfg = {**CFG, "_files": ["params.yaml"]}
    html = build_report(cfg, out, CAPTIONS, out / "report.html")
    return out, html


def test_report_is_self_contained_with_tables_figures_config_and_benchmarks(built):
    out, html = built
    text = html.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)  # nothing loaded from elsewhere
    assert "<script" not in text
    imgs = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(imgs) == 4
    for data in imgs:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Table 2: main results" in text and "Table 3: correlation with GPT-Rank" in text
    assert "PairRanker" in text and "Oracle (GPT-Rank)" in text
    assert "rank_candidates/pairranker" in text and "12.5" in text  # the benchmark time
    assert "bootstrap:" in text  # the config
    assert "judge.examples_unlabelled" in text  # what was missing
    for cap in ("figure1", "tradeoff", "table2", "pair_order"):
        assert html_escape((CAPTIONS / f"{cap}.rst").read_text().strip()[:40]) in text
    # the pair-order table, after Table 3 and before the counts, with its rows
    pairs = text.index("id='pair_order'")
    assert text.index("id='table3'") < pairs < text.index("id='counts'")
    assert "shorter-better pairs" in text[pairs:] and "PairRanker (Bubble)" in text[pairs:text.index("id='counts'")]


def test_report_shows_the_select_curve_only_where_the_evaluation_drew_it(tmp_path):
    out, _, _ = run_eval(tmp_path, matrices=curve_matrices(make_artifacts(tmp_path / "m"), tmp_path / "m.npz"))
    text = build_report(CFG, out, CAPTIONS, out / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r"src='data:image/png;base64,", text)) == 5 and "id='select_curve'" in text
    assert html_escape((CAPTIONS / "select_curve.rst").read_text().strip()[:40]) in text


def test_select_curve_caption_names_every_schedule_of_the_drawn_grid():
    """The caption describes the figure's cells; the grid itself is defined once, in select.DEFAULT_GRID
    (a caption that named the grid of before the race went unnoticed for sessions)."""
    from llmblend.ranker.select import DEFAULT_GRID

    caption = (CAPTIONS / "select_curve.rst").read_text(encoding="utf-8")
    assert "DEFAULT_GRID" in caption
    for schedule in sorted({name for name, _ in DEFAULT_GRID}):
        assert re.search(rf"\b{schedule}\b", caption), f"select_curve.rst does not name schedule {schedule!r}"


def test_report_needs_the_evaluate_outputs(tmp_path):
    with pytest.raises(InputError, match="summary.json: missing"):
        build_report({"run": "x"}, tmp_path, CAPTIONS, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_markdown_tables_become_html_tables():
    html = markdown_to_html("# T\n\nnote <b>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<h3>T</h3>" in html and "&lt;b&gt;" in html
    assert "<th>a</th><th>b</th>" in html and "<td>1</td><td>2</td>" in html and "---" not in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_report_renders_headless_with_tables_and_images(built, tmp_path):
    _, html = built
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run(flags + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    # the browser parsed the page into tables and images (the DOM after rendering, not our source text)
    assert dom.count("<table") >= 6
    assert dom.count("<img") == 4
    assert "Table 2: main results" in dom
    # the headline first, and the alternative readings folded away (no `open` after rendering)
    assert dom.index("What this run found") < dom.index("Table 2: main results")
    assert re.search(r"<p id=\"verdict\">On \d+ judged test prompts: .*(beyond|within) the noise", dom)
    assert dom.count("<details>") == 2 and "<details open" not in dom
    shot = tmp_path / "shot.png"
    subprocess.run(flags + ["--window-size=1200,3000", f"--screenshot={shot}", html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 3000 and pixels.shape[1] >= 1200
    # the embedded figures drew something: many distinct colours, not a blank or text-only page
    colours = {tuple(p) for p in (pixels[::7, ::7, :3] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 50


# --- issue 20: the report opens with the answer --------------------------------------------------

T2 = """| category | method | bertscore | gpt_rank | pick_len_words | gpt_rank 95% CI | n judged |
|---|---|---|---|---|---|---|
| LLMs | a | 60.00 | 2.50 | 9.00 | [2.20, 2.80] | 50 |
| LLMs | b | 61.00 | 2.10 | 3.00 | [1.90, 2.30] | 50 |
| Analysis | Oracle (GPT-Rank) | 70.00 | 1.00 | 4.00 | [1.00, 1.00] | 50 |
| Rankers | PairRanker | 62.00 | {pr} | 5.00 | {pr_ci} | 50 |
| LLM-Blender | PR (K=3) + GF | 64.00 | 1.95 | 6.00 | [1.80, 2.15] | 50 |
"""


def test_headline_names_the_best_llm_the_ranker_and_the_blender_and_reads_the_noise():
    from llmblend.analysis.report import headline

    text = headline(T2.format(pr="1.50", pr_ci="[1.30, 1.70]"))
    assert re.search(r"best single LLM</td><td>b</td><td>2.10</td><td>\[1.90, 2.30\]", text)
    assert re.search(r"PairRanker</td><td>PairRanker</td><td>1.50</td><td>\[1.30, 1.70\]", text)
    assert re.search(r"LLM-Blender</td><td>PR \(K=3\) \+ GF</td><td>1.95", text)
    assert "PairRanker ranks better than b beyond the noise" in text
    assert "PR (K=3) + GF and b differ within the noise" in text
    assert "PR (K=3) + GF ranks worse than PairRanker beyond the noise" in text
    text = headline(T2.format(pr="2.20", pr_ci="[2.05, 2.35]"))
    assert "PairRanker and b differ within the noise" in text and "On 50 judged test prompts" in text
    text = headline(T2.format(pr="2.90", pr_ci="[2.70, 3.10]"))
    assert "PairRanker ranks worse than b beyond the noise" in text


def test_best_value_of_each_column_is_marked_and_oracles_are_left_out():
    from llmblend.analysis.report import markdown_to_html

    html = markdown_to_html(T2.format(pr="1.50", pr_ci="[1.30, 1.70]"), mark_best=True)
    best = re.findall(r"<td class='best'>([^<]*)</td>", html)
    # bertscore: 64.00 (the oracle's 70.00 does not compete); gpt_rank: 1.50 (lower is better, not the
    # oracle's 1.00); pick length is no contest
    assert best == ["1.50", "64.00"]
    assert "class='best'" not in markdown_to_html(T2.format(pr="1.50", pr_ci="[1.30, 1.70]"))


def test_report_opens_with_the_headline_folds_the_readings_and_keeps_figures_by_their_tables(built):
    _, html = built
    text = html.read_text(encoding="utf-8")
    body = text.split("<body>", 1)[1]
    assert body.index("id='headline'") < body.index("id='table2'")
    assert "What this run found" in text and "<p id='verdict'>On " in text
    # every readings table inside a closed <details>
    assert text.count("<details><summary>Other readings") == 2 and "<details open" not in text
    for start in [m.start() for m in re.finditer("<details>", text)]:
        assert text.index("<table", start) < text.index("</details>", start)
    # figures beside the table they illustrate
    assert body.index("id='table2'") < body.index("id='figure1'") < body.index("id='table3'")
    assert body.index("id='table3'") < body.index("id='correlation_heatmap'") < body.index("id='counts'")
    assert text.count("class='best'") >= 8
