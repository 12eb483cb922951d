"""Mutation check: does the suite catch the regressions that matter?

Each mutant below is one small, meaningful change to the product code (a flipped loss sign, a
transposed matrix, swapped fields) and the fast tests that must fail on it. The check copies the
working tree (tracked files, plus untracked ones git does not ignore) to scratch folders, runs those
tests once on an unchanged copy (they must pass there, or a "kill" proves nothing), then applies one
mutant at a time to a copy and runs its tests (`--jobs` copies side by side, 2 by default for the
2-core CI machine): the check fails when a mutant survives. A mutant's snippet must
occur exactly once in its file, so a refactor that moves the code breaks the list loudly instead of
letting it rot.

    python tests/mutation/run_mutants.py                     # all mutants, table on stdout
    python tests/mutation/run_mutants.py --only loss-sign    # one (repeatable)
    python tests/mutation/run_mutants.py --report mutants.md --jobs 1   # one copy, one mutant at a time

The copy imports the package from its own src/ (PYTHONPATH), which takes precedence over the editable
install of the checkout; the baseline run checks that it does.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from workflow_utils import copy_repo  # noqa: E402  (the tests' copy of the working tree)


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the repository root
    find: str  # exact source text, present exactly once
    replace: str
    tests: tuple[str, ...]  # pytest node ids (relative to the root) that must fail on it


M = Mutant
MUTANTS = [
    M("config-undeclared-get-allowed", "src/llmblend/config.py",
      "    def get(self, key, default=None):\n        self._check(key)\n", "    def get(self, key, default=None):\n",
      ("tests/test_config.py::test_a_stage_reads_only_the_keys_its_rule_declares",)),
    M("cli-keys-ignored", "src/llmblend/cli.py",
      'return restrict(cfg, [k for k in keys.split(",") if k]) if keys is not None else cfg', "return cfg",
      ("tests/test_config.py::test_the_cli_refuses_an_undeclared_read_naming_the_key",)),
    M("tie-pairs-of-unequal-signal", "src/llmblend/ranker/train.py",
      "if (signal[i] == signal[j]) == ties]", "if (signal[i] == signal[j]) != ties]",
      ("tests/test_ranker.py::test_tie_pairs_are_pairs_of_equal_signal_in_both_orders",)),
    M("tie-pairs-without-their-loss", "src/llmblend/ranker/train.py",
      "            per = torch.where(sign == 0, -(F.logsigmoid(x) + F.logsigmoid(-x)) / 2, per)\n",
      "            pass  # ties keep the paper's loss, a constant ln 2\n",
      ("tests/test_ranker.py::test_pair_loss_on_a_tie_is_least_at_a_logit_of_zero_and_leaves_unequal_pairs_as_they_were",)),
    M("attention-dropout-not-passed", "src/llmblend/ranker/stage.py",
      'attention_dropout=rc["train"].get("attention_dropout"),', "attention_dropout=None,",
      ("tests/test_ranker.py::test_attention_dropout_setting_reaches_the_trained_backbone",)),
    M("race-plays-on-once-decided", "src/llmblend/ranker/select.py",
      "        if t[b] >= self.z:", "        if t[b] <= self.z:",
      ("tests/test_select.py::test_race_stops_early_on_a_clear_winner_and_plays_on_a_close_one",)),
    M("race-prediction-without-the-fits-error", "src/llmblend/ranker/select.py",
      '        var = s2 * (np.einsum("bu,bu->b", d, d) + np.einsum("bu,uv,bv->b", d, h, d))',
      '        var = s2 * np.einsum("bu,bu->b", d, d)',
      ("tests/test_select.py::test_race_trusts_the_fits_residuals_once_it_has_the_degrees_of_freedom",)),
    M("race-fallback-own-side-sign", "src/llmblend/ranker/select.py",
      "            self.sum[j] -= v", "            self.sum[j] += v",
      ("tests/test_select.py::test_race_stops_early_on_a_clear_winner_and_plays_on_a_close_one",)),
    M("race-own-side-sign", "src/llmblend/ranker/select.py",
      "        w[j, r] -= 1.0", "        w[j, r] += 1.0",
      ("tests/test_select.py::test_race_never_repeats_a_pair_and_plays_the_full_matrix_at_an_unreachable_z",)),
    M("precision-auto-inverted", "src/llmblend/models/precision.py",
      "parent[key] = bf16 if native else fp32", "parent[key] = fp32 if native else bf16",
      ("tests/test_precision.py::test_auto_becomes_bf16_only_on_native_bf16",)),
    M("mean-pooling-counts-padding", "src/llmblend/ranker/model.py",
      "ends = torch.cat([starts[:, 1:], attention_mask.sum(dim=1, keepdim=True)], dim=1)",
      "ends = torch.cat([starts[:, 1:], torch.full_like(starts[:, :1], h.shape[1])], dim=1)",
      ("tests/test_ranker.py::test_mean_pooling_averages_each_part_without_padding",)),
    M("matrix-bubble-transposed", "src/llmblend/ranker/infer.py",
      "return [[float(matrices[e][i, j]) for i, j in plist]", "return [[float(matrices[e][j, i]) for i, j in plist]",
      ("tests/test_ranker.py::test_bubble_and_schedules_played_on_the_saved_matrices",)),
    M("gguf-conversion-embeddings-untied", "src/llmblend/models/convert.py",
      "    fresh.tie_weights()", "    pass",
      ("tests/test_models.py::test_convert_gguf_parses_the_file_once_and_keeps_every_weight[True]",)),
    M("consensus-counts-itself", "src/llmblend/ranker/consensus.py",
      "out.append(((sim.sum(1) - np.diag(sim)) / (n - 1)).tolist()", "out.append((sim.sum(1) / (n - 1)).tolist()",
      ("tests/test_consensus.py::test_consensus_scores_each_answer_by_its_mean_similarity_to_the_others",)),
    M("combine-unscaled", "src/llmblend/ranker/consensus.py",
      "return (s - s.mean()) / sd if sd > 0 else np.zeros_like(s)", "return s - s.mean()",
      ("tests/test_consensus.py::test_combined_scores_sum_z_scores_so_that_no_scale_decides",)),
    M("combine-weight-ignored", "src/llmblend/ranker/stage.py",
      'weights = [1.0] + [float(setting(cfg, "ranker.consensus.weight"))] * (len(parts) - 1)',
      "weights = [1.0] * len(parts)",
      ("tests/test_consensus.py::test_pairranker_consensus_combines_the_two_rankings_files",)),
    M("blender-consensus-weight-ignored", "src/llmblend/blender.py",
      'return combined_scores(parts, [1.0] + [self.encoder["weight"]] * (len(parts) - 1))',
      "return combined_scores(parts, [1.0] * len(parts))",
      ("tests/test_blender.py::test_blender_consensus_modes_rank_as_the_stage",)),
    M("split-zip-unchecked", "src/llmblend/models/resolve.py",
      "if total != size or digest.hexdigest() != sha256:", "if total != size:",
      ("tests/test_models.py::test_split_zip_model_is_assembled_checked_and_never_left_partial",)),
    M("loss-sign", "src/llmblend/ranker/train.py",
      "per = -F.logsigmoid(sign * x)", "per = -F.logsigmoid(-sign * x)",
      ("tests/test_ranker.py::test_trained_ranker_prefers_the_better_candidate_on_held_out_inputs",)),
    M("length-balance-weights-swapped", "src/llmblend/ranker/train.py",
      "half / self.shares[k] if", 'half / self.shares["longer" if k == "shorter" else "shorter"] if',
      ("tests/test_ranker.py::test_length_balance_weights_make_half_the_weight_of_unequal_pairs_go_each_way",)),
    M("maxlogits-transpose", "src/llmblend/ranker/aggregate.py",
      "return (m - m.T).sum(axis=1) / max(n, 1)", "return (m.T - m).sum(axis=1) / max(n, 1)",
      ("tests/test_ranker.py::test_aggregations_on_a_hand_matrix",)),
    M("gpt-rank-tie-weight", "src/llmblend/judge/gpt_rank.py",
      "            mat[i][j] += 0.5\n            mat[j][i] += 0.5",
      "            mat[i][j] += 0.5\n            mat[j][i] -= 0.5",  # "Same good" read as a half win for A
      ("tests/test_judge_gpt_rank.py::test_reference_rule_wins_minus_losses_ties_cancel",)),
    M("gpt-rank-ties-share-worse-rank", "src/llmblend/judge/gpt_rank.py",
      "return [1 + sum(1 for o in values if o > v) for v in values]",
      "return [1 + sum(1 for o in values if o >= v) - 1 for v in values]",
      ("tests/test_judge_gpt_rank.py::test_reference_rule_wins_minus_losses_ties_cancel",)),
    M("judge-orders-agree-without-flip", "src/llmblend/judge/run.py",
      "if la == flip(lb):", "if la == lb:",
      ("tests/test_judge_offline.py::test_two_orders_combine_into_one_label",)),
    M("judge-failed-order-ignored", "src/llmblend/judge/run.py",
      "    if la in FAILED or lb in FAILED:\n", "    if la in FAILED and lb in FAILED:\n",
      ("tests/test_judge_offline.py::test_two_orders_combine_into_one_label",)),
    M("judge-403-retried", "src/llmblend/judge/backends.py",
      "if fault.status in (401, 403):", "if fault.status in (401,):",
      ("tests/test_judge_openai.py::test_a_refused_key_stops_the_judge_at_once",)),
    M("gpt4all-input-output-swap", "src/llmblend/data/sources/paper.py",
      '"input": _str(row, "prompt", where),\n                      "output": _str(row, "response", where)',
      '"input": _str(row, "response", where),\n                      "output": _str(row, "prompt", where)',
      ("tests/test_adapter_fields.py::test_gpt4all_adapter_fields",)),
    M("dolly-context-dropped", "src/llmblend/data/sources/paper.py",
      'inp = row.get("input", row.get("context", ""))', 'inp = row.get("input", "")',
      ("tests/test_adapter_fields.py::test_dolly_adapter_fields",)),
    M("sharegpt-input-output-swap", "src/llmblend/data/sources/paper.py",
      'return "", turns[0]["value"], turns[1]["value"]', 'return "", turns[1]["value"], turns[0]["value"]',
      ("tests/test_adapter_fields.py::test_sharegpt_adapter_fields",)),
    M("alpaca-gpt4-instruction-input-swap", "src/llmblend/data/sources/paper.py",
      '"instruction": _str(row, "instruction", where),\n                      "input": _str(row, "input", where)',
      '"instruction": _str(row, "input", where),\n                      "input": _str(row, "instruction", where)',
      ("tests/test_adapter_fields.py::test_alpaca_gpt4_adapter_fields",)),
    M("split-seed-ignored", "src/llmblend/data/split.py",
      "random.Random(seed).shuffle(recs)", "random.Random(0).shuffle(recs)",
      ("tests/test_data_stage.py::test_split_follows_the_seed",)),
    M("fuser-top-k-worst-first", "src/llmblend/fuser/prompt.py",
      "key=lambda i: (ranks[i], i))", "key=lambda i: (-ranks[i], i))",
      ("tests/test_fuser.py::test_top_k_and_ranks_from_scores",)),
    M("blender-top-k-worst-first", "src/llmblend/blender.py",
      'np.argsort(-np.asarray(s), kind="stable")', 'np.argsort(np.asarray(s), kind="stable")',
      ("tests/test_blender.py::test_rank_and_fuse_passes_the_top_k_best_first",)),
    M("blender-compare-b-first-unsigned", "src/llmblend/blender.py",
      "logits = [-v[0] for v in vals]", "logits = [v[0] for v in vals]",
      ("tests/test_blender.py::test_compare_modes_against_the_pair_logits",)),
    M("blender-input-count-unchecked", "src/llmblend/blender.py",
      "if n is not None and len(value) != n:", "if False:",
      ("tests/test_blender.py::test_rank_modes_and_errors",)),
    M("blender-empty-candidates-unchecked", "src/llmblend/blender.py",
      "        if not cands:\n", "        if False:\n",
      ("tests/test_blender.py::test_rank_modes_and_errors",)),
    M("fuser-infer-top-k-worst-first", "src/llmblend/fuser/infer.py",
      "top = order[: fuser.spec.top_k]", "top = order[::-1][: fuser.spec.top_k]",
      ("tests/test_fuser.py::test_fusion_gets_the_top_k_best_first_and_a_rerun_fuses_only_what_is_missing",)),
    M("fuser-resume-redoes-done-ids", "src/llmblend/fuser/infer.py",
      'if records[i]["id"] not in done]', "]",
      ("tests/test_fuser.py::test_fusion_gets_the_top_k_best_first_and_a_rerun_fuses_only_what_is_missing",)),
    M("generate-resume-redoes-done-ids", "src/llmblend/generate/backend.py",
      'return self.batches([r for r in records if r["id"] not in done])', "return self.batches(list(records))",
      ("tests/test_generate.py::test_shard_resume_after_kill_writes_each_record_once",)),
    M("metrics-resume-rescores-done-chunks", "src/llmblend/metrics/stage.py",
      "if str(start) in done:", "if False:",
      ("tests/test_metrics_stage.py::test_a_killed_job_resumes_without_rescoring_and_gives_the_same_bytes[False]",)),
    M("ranker-resume-from-scratch", "src/llmblend/ranker/train.py",
      'first_epoch = resume["epoch"]\n', "first_epoch = 1\n",
      ("tests/test_ranker.py::test_killed_training_resumes_to_the_same_model",)),
    M("ranker-best-epoch-is-last", "src/llmblend/ranker/train.py",
      "if vs > best or best_state is None:", "if True:",
      ("tests/test_ranker.py::test_training_keeps_the_best_validated_epoch",)),
]


def pytest_run(scratch: Path, node_ids, timeout: float) -> tuple[int | None, str, float]:
    """(exit code or None on timeout, output tail, seconds) of pytest on the scratch copy."""
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=os.pathsep.join(filter(None, [str(scratch / "src"),
                                                                                 os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:cacheprovider", "--no-header", "-o",
           "addopts=--strict-markers", *node_ids]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"no result within {timeout:.0f} s", time.monotonic() - t0
    return r.returncode, (r.stdout + r.stderr)[-1500:], time.monotonic() - t0


def check_list(mutants) -> list[str]:
    """Every snippet occurs exactly once in its file (of the real tree, not the copy)."""
    problems = []
    for m in mutants:
        text = (ROOT / m.file).read_text(encoding="utf-8")
        n = text.count(m.find)
        if n != 1:
            problems.append(f"{m.name}: its snippet occurs {n} times in {m.file} (expected once): update the list")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="run only this mutant (repeatable)")
    ap.add_argument("--report", help="also write the table (markdown) to this file")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per pytest run")
    ap.add_argument("--jobs", type=int, default=2, help="mutants tested side by side, each in its own copy")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies (their paths are printed)")
    args = ap.parse_args(argv)
    known = {m.name for m in MUTANTS}
    if len(known) != len(MUTANTS) or set(args.only) - known:
        print(f"unknown or repeated mutant names: {sorted(set(args.only) - known)}", file=sys.stderr)
        return 2
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    problems = check_list(mutants)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    t_start = time.monotonic()
    jobs = max(1, min(args.jobs, len(mutants)))
    copies = [Path(tempfile.mkdtemp(prefix="llmblend-mutants-")) for _ in range(jobs)]
    try:
        for scratch in copies:
            copy_repo(scratch)
        # the baseline: the package comes from the copy, and every killing test passes unmutated
        probe = subprocess.run([sys.executable, "-c", "import llmblend; print(llmblend.__file__)"], cwd=copies[0],
                               env=dict(os.environ, PYTHONPATH=str(copies[0] / "src")), capture_output=True,
                               text=True)
        if not probe.stdout.strip().startswith(str(copies[0])):
            print(f"the copy imports llmblend from {probe.stdout.strip() or probe.stderr[-500:]}, not {copies[0]}",
                  file=sys.stderr)
            return 2
        node_ids = sorted({t for m in mutants for t in m.tests})
        rc, tail, secs = pytest_run(copies[0], node_ids, args.timeout * 2)
        print(f"baseline: {len(node_ids)} killing tests on the unmutated copy: exit {rc} in {secs:.0f} s", flush=True)
        if rc != 0:
            print(tail, file=sys.stderr)
            return 1
        free: queue.Queue = queue.Queue()
        for scratch in copies:
            free.put(scratch)

        def test_one(m: Mutant):
            scratch = free.get()  # a copy no other mutant is using now
            try:
                path = scratch / m.file
                original = path.read_text(encoding="utf-8")
                path.write_text(original.replace(m.find, m.replace), encoding="utf-8")
                try:
                    rc, tail, secs = pytest_run(scratch, m.tests, args.timeout)
                finally:
                    path.write_text(original, encoding="utf-8")
            finally:
                free.put(scratch)
            # 1: a test failed; 2: collection failed (the mutant broke an import): both are kills.
            # 0: survived; 4/5: a node id is wrong or selects nothing: the list is broken
            result = {0: "SURVIVED", 1: "killed", 2: "killed (collection error)", None: "TIMEOUT"}.get(
                rc, f"ERROR (pytest exit {rc})")
            # how it was killed (pytest's short summary), to tell a real catch from an unrelated crash
            why = [x for x in tail.splitlines() if x.startswith(("FAILED ", "ERROR "))][:1]
            print(f"{m.name}: {result} ({secs:.0f} s){': ' + why[0][:300] if why else ''}", flush=True)
            if not result.startswith("killed"):
                print(f"--- {m.name}: {result}\n{tail}", file=sys.stderr, flush=True)
            return m, result, secs

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            rows = list(pool.map(test_one, mutants))
        failed = sum(1 for _, res, _ in rows if not res.startswith("killed"))
        total = time.monotonic() - t_start
        table = ["| mutant | file | killing test(s) | result | s |", "|---|---|---|---|---|"]
        table += [f"| {m.name} | {m.file} | {'<br>'.join(t.split('/')[-1] for t in m.tests)} | {res} | {s:.0f} |"
                  for m, res, s in rows]
        table.append(f"\n{len(rows) - failed} of {len(rows)} mutants killed in {total:.0f} s ({jobs} at a time)")
        print("\n".join(table))
        if args.report:
            Path(args.report).write_text("\n".join(table) + "\n", encoding="utf-8")
        return 1 if failed else 0
    finally:
        for scratch in copies:
            if args.keep:
                print(f"scratch copy kept: {scratch}")
            else:
                shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
