"""Best-of-N selection schedules (llmblend.ranker.select): pass counts, no pair twice, exactness on
consistent matrices, the batched engine, and Blender.best_of_n(schedule=...)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import llmblend
from llmblend.ranker import infer, select
from llmblend.ranker.model import build_ranker

from test_ranker import tiny_backbone  # noqa: F401  (fixture)


def consistent(f, bias=0.0):
    """M_ij = f_i - f_j (+ a position bias): every aggregation agrees on the order of f."""
    f = np.asarray(f, dtype=float)
    m = f[:, None] - f[None, :] + bias
    np.fill_diagonal(m, 0.0)
    return m


def play_logged(sched, m):
    """play_matrix, keeping every ordered pair the schedule asked for (in order)."""
    asked = []
    while sched.pending():
        asked += sched.pending()
        sched.feed({p: float(m[p]) for p in sched.pending()})
    return asked


def test_full_equals_max_logits():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 12):
        m = rng.normal(size=(n, n))
        np.fill_diagonal(m, 0.0)
        s = select.play_matrix(select.make("full", n, seed=0), m)
        assert s.scores == infer.max_logits(m).tolist()  # exactly, not approximately
        assert s.n_forward == n * (n - 1)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 12, 13])
def test_sampled_never_repeats_a_pair_and_never_exceeds_the_matrix(n):
    rng = np.random.default_rng(n)
    m = rng.normal(size=(n, n))
    for opponents in range(1, 7):
        for refine_top in range(1, n + 2):
            for seed in range(3):
                s = select.make("sampled", n, seed, opponents=opponents, refine_top=refine_top)
                asked = play_logged(s, m)
                assert len(asked) == len(set(asked)) == s.n_forward
                assert all(i != j for i, j in asked)
                assert s.n_forward <= min(n * (n - 1), select.max_forward("sampled", n, opponents, refine_top))
                if refine_top >= n:  # leaders = everyone: the full matrix
                    assert s.n_forward == n * (n - 1)
                assert len(s.scores) == n and 0 <= s.pick < max(n, 1)


def test_sampled_round_one_is_a_balanced_cyclic_design():
    n, opponents = 12, 2
    s = select.make("sampled", n, seed=5, opponents=opponents, refine_top=3)
    first = s.pending()
    assert len(first) == n * opponents
    for c in range(n):  # shown first `opponents` times and second `opponents` times
        assert sum(i == c for i, _ in first) == opponents and sum(j == c for _, j in first) == opponents
    assert len({frozenset(p) for p in first}) == len(first)  # no unordered pair twice
    assert s.pending() == select.make("sampled", n, seed=5, opponents=opponents).pending()  # seeded
    # N=5, 4 opponents: shifts 3 and 4 would repeat the pairs of shifts 2 and 1 (reversed): skipped
    small = select.make("sampled", 5, seed=0, opponents=4).pending()
    assert len(small) == 10 and len({frozenset(p) for p in small}) == 10
    assert s.pending() != select.make("sampled", n, seed=6, opponents=opponents).pending()


def test_round_one_score_is_the_own_side_mean():
    # candidate 0 shown first against 1 (logit 2.0), second against 2 (logit -1.0: 0 was better)
    assert select._own_side_means(3, {(0, 1): 2.0, (2, 0): -1.0}).tolist() == [1.5, -2.0, -1.0]


def test_sampled_finds_the_best_of_a_consistent_matrix_when_the_leaders_cover_it():
    # Three strong candidates (10, 9, 8) among nine weak ones in [0, 1]. With one opponent per side,
    # the best's round-1 score is at least 10 - (9 + 8) / 2 = 1.5, a weak one's at most 1 - 0 = 1: the
    # best is always in the round-1 top 3, though not always first (9 next to 10 and a weak one scores
    # 9 - 10.x / 2 > 1.5). With consistent logits the least-squares fit is exact, so the leaders are
    # then ordered by f: refine_top=3 finds the best for every permutation seed, refine_top=1 does not.
    rng = np.random.default_rng(0)
    n = 12
    found = {1: 0, 3: 0}
    for seed in range(60):
        f = np.concatenate([[10.0, 9.0, 8.0], rng.uniform(0, 1, size=n - 3)])
        f = f[rng.permutation(n)]
        m = consistent(f, bias=0.3)
        for k in (1, 3):
            s = select.play_matrix(select.make("sampled", n, seed, opponents=1, refine_top=k), m)
            found[k] += s.pick == int(np.argmax(f))
            if k == 3:
                assert int(np.argmax(f)) in s.leaders
                assert s.n_forward <= n + 6
                order = np.argsort(-np.asarray(s.scores), kind="stable")[:3].tolist()
                assert order == sorted(s.leaders, key=lambda i: -f[i])  # the leaders first, in the order of f
    assert found[3] == 60 and found[1] < 60


def test_sampled_leaders_rank_above_the_others():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(9, 9))
    s = select.play_matrix(select.make("sampled", 9, 2, opponents=2, refine_top=3), m)
    sc = np.asarray(s.scores)
    others = [i for i in range(9) if i not in s.leaders]
    assert sc[s.leaders].min() > sc[others].max()


def test_sampled_with_everyone_refined_picks_as_max_logits():
    rng = np.random.default_rng(2)
    for n in (2, 3, 6):
        for seed in range(5):
            m = rng.normal(size=(n, n))
            np.fill_diagonal(m, 0.0)
            s = select.play_matrix(select.make("sampled", n, seed, opponents=1, refine_top=n), m)
            assert s.pick == int(np.argmax(infer.max_logits(m)))
            # least squares on the full matrix is MaxLogits / 2 up to a constant
            lsq = select.lsq_strengths(n, s.obs)
            ml = infer.max_logits(m)
            assert np.allclose(lsq - lsq.mean(), (ml - ml.mean()) / 2, atol=1e-9)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 12])
def test_race_never_repeats_a_pair_and_plays_the_full_matrix_at_an_unreachable_z(n):
    rng = np.random.default_rng(n)
    for seed in range(3):
        m = rng.normal(size=(n, n))
        np.fill_diagonal(m, 0.0)
        for z in (0.0, 1.0, 2.0):
            s = select.make("race", n, seed, z=z)
            asked = play_logged(s, m)
            assert len(asked) == len(set(asked)) == s.n_forward <= n * (n - 1) == select.max_forward("race", n)
            assert all(i != j for i, j in asked) and len(s.scores) == n and 0 <= s.pick < max(n, 1)
        # no gap is 1e9 standard errors: every candidate is played out, and the scores are MaxLogits'
        s = select.play_matrix(select.make("race", n, seed, z=1e9), m)
        assert s.n_forward == n * (n - 1)
        assert np.allclose(s.scores, infer.max_logits(m)) and s.pick == int(np.argmax(infer.max_logits(m)))


def test_race_stops_early_on_a_clear_winner_and_plays_on_a_close_one():
    rng = np.random.default_rng(0)
    f = rng.normal(scale=0.3, size=12)
    played = {}
    for gap in (3.0, 0.05):  # candidate 3 at 1.5, candidate 5 that much behind
        g = f.copy()
        g[3], g[5] = 1.5, 1.5 - gap
        m = consistent(g) + rng.normal(scale=0.1, size=(12, 12))
        np.fill_diagonal(m, 0.0)
        s = select.play_matrix(select.make("race", 12, 1, z=2.5), m)
        assert s.pick == int(np.argmax(infer.max_logits(m))) == 3
        played[gap] = s.n_forward
        if gap == 3.0:  # the fit never trusted (min_dof unreachable): each one's own spread stops it early too
            s = select.play_matrix(select.make("race", 12, 1, z=2.5, min_dof=10**6), m)
            assert s.pick == 3 and s.n_forward <= 36, s.n_forward
    assert played[3.0] <= 28 and played[0.05] >= 1.6 * played[3.0], played  # round 1 is 12 passes, N(N-1) 132


def test_race_predicts_maxlogits_with_a_calibrated_error():
    """Two candidates 0.05 apart under noise 0.1 per entry: a race whose stopping error is what its z
    says (z = 2.5: about 1 wrong pick in 160) picks MaxLogits' top-1 on nearly every draw, and still
    plays less than the full matrix."""
    rng = np.random.default_rng(0)
    wrong, spent = 0, []
    for e in range(40):
        f = rng.normal(scale=0.3, size=12)
        f[3], f[5] = 1.5, 1.45
        m = consistent(f) + rng.normal(scale=0.1, size=(12, 12))
        np.fill_diagonal(m, 0.0)
        top = int(np.argmax(infer.max_logits(m)))
        s = select.play_matrix(select.make("race", 12, 0, e, z=2.5), m)
        wrong += s.pick != top
        spent.append(s.n_forward)
    assert wrong <= 2 and np.mean(spent) < 0.5 * 132, (wrong, np.mean(spent))


def test_race_trusts_the_fits_residuals_once_it_has_the_degrees_of_freedom():
    """Strengths spread far apart make each candidate's played values spread as far (its opponents
    differ), while the fit explains them: with the fit's residual variance the race stops much earlier
    on the same picks than when it never trusts the fit (min_dof above any reachable)."""
    rng = np.random.default_rng(11)
    spent = {5: [], 10**6: []}
    for e in range(40):
        f = rng.normal(scale=2.0, size=12)
        f[np.argmax(f)] += 1.0  # a clear winner
        m = consistent(f) + rng.normal(scale=0.2, size=(12, 12))
        np.fill_diagonal(m, 0.0)
        for min_dof in spent:
            s = select.play_matrix(select.make("race", 12, 0, e, z=2.5, min_dof=min_dof), m)
            assert s.pick == int(np.argmax(infer.max_logits(m)))
            spent[min_dof].append(s.n_forward)
    assert np.mean(spent[5]) < 0.75 * np.mean(spent[10**6]), {k: np.mean(v) for k, v in spent.items()}


def test_race_buys_agreement_with_passes():
    """On noisy matrices, a larger z spends more passes and agrees more often with full MaxLogits; at
    the 25% of the passes where `sampled` (o1 k5) agrees on ~80%, the race agrees on more."""
    rng = np.random.default_rng(5)
    mats = []
    for _ in range(120):
        f = rng.normal(size=12)
        m = f[:, None] - f[None, :] + 0.3 + rng.normal(scale=0.7, size=(12, 12))
        np.fill_diagonal(m, 0.0)
        mats.append(m)
    rows = select.simulate_grid(mats, seed=0, grid=[("sampled", {"opponents": 1, "refine_top": 5})] + [
        ("race", {"z": z}) for z in (0.5, 1.0, 1.5, 3.0)])
    passes = [r["passes_pct"] for r in rows[1:]]
    agree = [r["top1_agreement"] for r in rows[1:]]
    assert passes == sorted(passes) and agree[-1] > agree[0] and agree[-1] >= 0.97
    at_quarter = max((r for r in rows[1:] if r["passes_pct"] <= rows[0]["passes_pct"]), key=lambda r: r["passes_pct"])
    assert at_quarter["top1_agreement"] > rows[0]["top1_agreement"] + 0.05, (at_quarter, rows[0])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 12, 13])
def test_knockout_finds_the_condorcet_winner_with_2n_minus_2_passes(n):
    rng = np.random.default_rng(n)
    for seed in range(10):
        f = rng.normal(size=n)
        m = consistent(f, bias=-0.4)  # a position bias cancels: each match runs in both orders
        s = select.make("knockout", n, seed)
        asked = play_logged(s, m)
        assert len(asked) == len(set(asked)) == s.n_forward == 2 * (n - 1) == select.max_forward("knockout", n)
        assert s.pick == int(np.argmax(f)) == int(np.argmax(s.scores))
        assert sorted(s.scores).count(max(s.scores)) == 1  # the winner alone has the top score


def test_run_batches_rounds_across_examples(monkeypatch):
    quality = np.random.default_rng(0).normal(size=(4, 7))
    calls = []

    def fake_pair_logits(model, tok, sources, candidates, pairs, **kw):
        calls.append(sum(len(p) for p in pairs))
        return [[quality[int(s)][i] - quality[int(s)][j] for i, j in plist] for s, plist in zip(sources, pairs)]

    monkeypatch.setattr(infer, "pair_logits", fake_pair_logits)
    srcs, cands = [str(e) for e in range(4)], [["x"] * 7 for _ in range(4)]
    for name, rounds in (("full", 1), ("sampled", 2), ("knockout", 3)):
        calls.clear()
        scores, n_fwd = select.select(None, None, srcs, cands, name, seed=1, settings={"opponents": 2, "refine_top": 3})
        assert len(calls) == rounds  # one model call per round, all examples together
        assert sum(calls) == sum(n_fwd)
        if name != "sampled":
            assert [int(np.argmax(s)) for s in scores] == [int(np.argmax(q)) for q in quality]
        # the engine agrees with playing the schedule on the full matrix
        for e in range(4):
            s = select.play_matrix(select.make(name, 7, 1, e, opponents=2, refine_top=3), consistent(quality[e]))
            assert np.allclose(s.scores, scores[e]) and s.n_forward == n_fwd[e]


def test_unknown_schedule():
    with pytest.raises(ValueError, match="schedule"):
        select.make("bogus", 4, 0)
    with pytest.raises(ValueError, match="opponents"):
        select.make("sampled", 4, 0, opponents=0)
    with pytest.raises(ValueError, match="leader rule"):
        select.make("sampled", 4, 0, rule="best")
    with pytest.raises(ValueError, match="z="):
        select.make("race", 4, 0, z=-1.0)
    with pytest.raises(TypeError, match="refine_top"):  # a setting of another schedule is not ignored
        select.make("race", 4, 0, refine_top=3)


def test_blender_best_of_n_with_a_schedule(tiny_backbone, tmp_path, monkeypatch):  # noqa: F811
    torch.manual_seed(3)
    model, tok = build_ranker("pairranker", tiny_backbone, "test")
    model.save_pretrained(tmp_path / "pr", tok)
    b = llmblend.Blender(ranker=tmp_path / "pr", seed=2)
    inputs = ["name a colour", "is the cat on the mat"]
    cands = [["blue", "the green tree house", "red because seven", "no", "yes"], ["yes", "no", "the cat sat"]]
    plain = b.best_of_n(inputs, cands)
    spent = []
    real = infer.pair_logits

    def counting(*a, **kw):
        spent.append(sum(len(p) for p in a[4]))
        return real(*a, **kw)

    monkeypatch.setattr(infer, "pair_logits", counting)
    b.best_of_n(inputs, cands, schedule="knockout")
    assert sum(spent) == 2 * (5 - 1) + 2 * (3 - 1)  # the schedule ran, not the full matrix
    assert b.best_of_n(inputs, cands, schedule="full") == plain  # the same pick as MaxLogits
    for sched in ("sampled", "knockout", "race"):
        best = b.best_of_n(inputs, cands, schedule=sched)
        assert [x in c for x, c in zip(best, cands)] == [True, True]
    assert b.best_of_n(inputs, cands, schedule="sampled", opponents=1, refine_top=5) == plain
    spent.clear()  # race with a z no gap reaches plays both full matrices: MaxLogits' picks
    assert b.best_of_n(inputs, cands, schedule="race", z=1e9) == plain and sum(spent) == 5 * 4 + 3 * 2
    with pytest.raises(ValueError, match="schedule"):
        b.best_of_n(inputs, cands, schedule="bogus")


def test_method_wiring_labels_and_cost():
    from llmblend.analysis.tables import method_name, settings_of
    from llmblend.ranker.methods import method_kind, model_for

    for m, label in (("pairranker-sampled", "PairRanker (sampled)"), ("pairranker-knockout", "PairRanker (knockout)"),
                     ("pairranker-race", "PairRanker (race)")):
        assert method_kind(m) == "select" and model_for(m) == "pairranker"
        assert method_name(m, settings_of({})) == label
        assert m in settings_of({})["tradeoff_methods"]
    assert select.max_forward("sampled", 12, 2, 3) == 30 and select.max_forward("knockout", 12) == 22
    assert select.max_forward("sampled", 3, 4, 5) == 6  # never more than the full matrix
    assert select.max_forward("race", 12, z=2.0) == 132  # a close prompt may play it all


def test_simulate_grid_full_agrees_fully_with_every_pass():
    rng = np.random.default_rng(4)
    mats = [rng.normal(size=(n, n)) for n in (4, 7, 12, 12)]
    for m in mats:
        np.fill_diagonal(m, 0.0)
    rows = select.simulate_grid(mats, seed=3)
    assert [select.cell_label(r) for r in rows] == ["full", "knockout"] + [
        f"o{o} k{k}" for o in (1, 2, 3) for k in (2, 3, 4, 5)] + [
        f"race z{z}" for z in ("1", "1.5", "2", "2.5", "3")]  # the default grid
    full = rows[0]
    assert full["top1_agreement"] == 1.0 and full["passes_pct"] == 100.0
    assert full["passes_per_prompt"] == (12 + 42 + 132 + 132) / 4
    assert full["picks"] == [int(np.argmax(infer.max_logits(m))) for m in mats]
    for r in rows:  # the picks are those of the schedules played one by one
        kw = {k: r[k] for k in ("opponents", "refine_top", "rule", "z") if r[k] is not None}
        for e, m in enumerate(mats):
            s = select.play_matrix(select.make(r["schedule"], m.shape[0], 3, e, **kw), m)
            assert r["picks"][e] == s.pick and r["n_forward"][e] == s.n_forward and r["scores"][e] == s.scores


def test_simulate_grid_on_consistent_matrices_by_hand():
    # N = 3, opponents 2: shift 2 repeats shift 1 (reversed), so round 1 is the 3-cycle, 3 passes; each
    # candidate is shown first once and second once, so the bias cancels and the round-1 order is f's.
    # refine_top 2: + the leaders' missing order, 1 pass (4); refine_top 3: + 3 (6, the full matrix).
    # N = 5, opponents 2: shifts 1 and 2 cover all 10 pairs once (10 passes), each candidate first twice
    # and second twice: again f's order; refine_top 2: + 1 (11), refine_top 3: + 3 (13). Knockout:
    # 2(N-1) = 4 and 8. Consistent logits: every schedule picks the best f.
    mats = [consistent([0.0, 2.0, 1.0], bias=0.5), consistent([1.0, 4.0, 0.0, 3.0, 2.0], bias=-0.3)]
    grid = [("full", {}), ("knockout", {}), ("sampled", {"opponents": 2, "refine_top": 2}),
            ("sampled", {"opponents": 2, "refine_top": 3})]
    rows = select.simulate_grid(mats, seed=(0, 1, 2), grid=grid)
    got = [(r["schedule"], r["opponents"], r["refine_top"], r["passes_per_prompt"], round(r["passes_pct"], 2),
            r["top1_agreement"], r["meets_target"]) for r in rows]
    assert got == [("full", None, None, 13.0, 100.0, 1.0, False),          # (6 + 20) / 2
                   ("knockout", None, None, 6.0, 46.15, 1.0, False),        # (4 + 8) / 26
                   ("sampled", 2, 2, 7.5, 57.69, 1.0, False),              # (4 + 11) / 26
                   ("sampled", 2, 3, 9.5, 73.08, 1.0, False)]              # (6 + 13) / 26
    assert all(r["picks"] == [1, 1] * 3 and r["prompts"] == 2 and r["seeds"] == 3 for r in rows)
    assert all(r["n_forward"][:2] == n for r, n in zip(rows, ([6, 20], [4, 8], [4, 11], [6, 13])))
    assert rows[2]["rule"] == select.LEADER_RULE and rows[0]["rule"] is None
    # rock-paper-scissors (antisymmetric, a > b > c > a; c's win over a is the largest): MaxLogits picks
    # c, a 3-bracket is won by the candidate with the bye (the last of the permutation): it agrees on
    # the seeds where that is c
    m = np.zeros((3, 3))
    m[0, 1], m[1, 2], m[2, 0] = 1.0, 1.0, 3.0
    m -= m.T
    seeds = range(20)
    knock = select.simulate_grid([m], seed=seeds, grid=[("knockout", {})])[0]
    byes = [int(np.random.default_rng([s, 0]).permutation(3)[2]) for s in seeds]
    assert knock["picks"] == byes
    assert knock["top1_agreement"] == knock["top1_agreement_unique"] == np.mean([b == 2 for b in byes])
    assert 0 < knock["top1_agreement"] < 1
    assert select.simulate_grid([], seed=0, grid=[("full", {})])[0]["prompts"] == 0
    # two identical answers tied for first (equal rows and columns): either is MaxLogits' pick, so a
    # schedule that picks either agrees, and the prompt is not one with a unique top-1
    s = np.array([2.0, 2.0, 0.5, -1.0])
    tied = select.simulate_grid([s[:, None] - s[None, :]], seed=seeds, grid=[("knockout", {})])[0]
    assert set(tied["picks"]) == {0, 1}
    assert tied["top1_agreement"] == 1.0 and np.isnan(tied["top1_agreement_unique"])
