"""Best-of-N with the PairRanker without the full comparison matrix: round-based selection schedules.

A schedule serves one example of N candidates. `pending()` gives the ordered pairs (i, j) of the
current round (candidate i shown first), `feed({(i, j): logit})` records their logits (> 0: i better)
and moves on; an empty `pending()` means done. Then `scores` (higher = better), `pick` (the argmax)
and `n_forward` (forward passes spent). `run` plays one round of every example at once through
`infer.pair_logits`, batched across examples, as `infer.bubble` does; `play_matrix` plays a schedule
on a precomputed full matrix instead: a schedule's passes are entries of that matrix. `simulate_grid`
plays a grid of schedules on the full matrices of a split (the one place for that simulation: the
evaluate stage's select_curve and benchmarks/bench_select.py call it).

- `full`: every ordered pair, one round, N(N-1) passes; scores = `infer.max_logits`.
- `sampled` (`opponents` o, `refine_top` k): round 1 is a seeded cyclic design over a random
  permutation p: for each shift d = 1..o the pairs (p[m], p[(m + d) % N]) for every m, so each
  candidate is shown first o times and second o times (N*o passes; a shift that would repeat an
  unordered pair of an earlier shift is skipped, so small N never exceeds the full matrix). Round-1
  score of i: the mean of its own side's logit over its comparisons (+logit shown first, -logit
  shown second). Round 2: the k best by that score play every ordered pair among themselves not
  yet run (at most k(k-1) passes). Final rule (`LEADER_RULE`, chosen in a simulation, see
  docs/ranker.md): the leaders are ranked by f of a least-squares fit of
  logit(i, j) ~ f_i - f_j + g_i + g_j + c over every observed entry (g: each candidate's own position
  effect, c: the position bias), which is MaxLogits / 2 plus a constant when the matrix is complete;
  the others keep their round-1 score, shifted below every leader. k >= N runs the full matrix.
- `race` (`z`, `opponents` o, `min_dof`): adaptive, a racing algorithm after LUCB (Kalyanakrishnan
  et al., 2012) on the MaxLogits score itself. Round 1 is `sampled`'s cyclic design. After each round
  every candidate's MaxLogits score is predicted: its played values as played, its unplayed ones by
  the least-squares fit of `sampled` over the played entries; each gap to the leader gets the fit's
  prediction variance (the unplayed entries' noise around the fit plus the fit's own error; the
  noise is the fit's residual variance once it has `min_dof` degrees of freedom, before that the
  spread of each candidate's own played values, which counts opponents' strengths as noise and is
  larger). The rival b whose gap to the leader a is the fewest standard errors is found, and the
  schedule stops when that is >= z. Otherwise it plays a against b (both orders) if not yet played,
  else one new comparison each for a and b (random unplayed opponent, in the position each has played
  less). Easy prompts stop after a few rounds, close ones play on, up to the full matrix: the passes
  differ by prompt, and z trades passes for agreement with full MaxLogits. z and min_dof were chosen
  on the val matrices of five trained rankers (docs/results.md, "The race with the fit's prediction
  variance").
- `knockout`: a single-elimination bracket over a seeded shuffle, each match in both orders
  (logit(a, b) - logit(b, a) > 0: a advances, else b; an odd one out gets a bye), 2(N-1) passes in
  ceil(log2 N) rounds; score = rounds survived (a bye counts), so the winner alone has the top score
  (only the top-1 is meaningful).
"""

from __future__ import annotations

import numpy as np

# numpy only: the evaluate stage simulates the schedules without loading torch (run() imports infer)
from llmblend.config import schema_default
from llmblend.ranker.aggregate import max_logits

SCHEDULES = ("full", "sampled", "race", "knockout")
# `sampled`'s defaults, the schema's (ranker.select): one opponent per side, then the top 5 play each
# other, ~31 of 132 passes for N=12; it agreed with full MaxLogits' top-1 on 89-95% of the real
# alpaca_eval test prompts (docs/results.md), more than opponents=2, refine_top=3 (82.5-84.5%)
DEFAULT_OPPONENTS = schema_default("ranker.select.opponents")
DEFAULT_REFINE_TOP = schema_default("ranker.select.refine_top")
# how the refined leaders of `sampled` are ranked: "lsq" (least squares over all observed entries, see
# lsq_strengths; "lsq_plain" without the position effects g), "mean" (mean own-side logit over all
# their comparisons), "sub" (MaxLogits of the leaders' sub-matrix). lsq agreed best with full
# MaxLogits on average over the simulated regimes (docs/ranker.md, benchmarks/bench_select.py).
LEADER_RULE = "lsq"
LEADER_RULES = ("lsq", "lsq_plain", "mean", "sub")
# `race`'s defaults, the schema's (ranker.race)
DEFAULT_Z = schema_default("ranker.race.z")
DEFAULT_RACE_OPPONENTS = schema_default("ranker.race.opponents")
DEFAULT_RACE_MIN_DOF = schema_default("ranker.race.min_dof")


class _Schedule:
    def __init__(self, n: int):
        self.n = n
        self.obs: dict[tuple[int, int], float] = {}
        self._round: list[tuple[int, int]] = []

    def pending(self) -> list[tuple[int, int]]:
        return list(self._round)

    def feed(self, logits: dict) -> None:
        for p in self._round:
            self.obs[p] = float(logits[p])
        self._round = self._next_round()

    def _next_round(self) -> list[tuple[int, int]]:
        return []

    @property
    def n_forward(self) -> int:
        return len(self.obs)

    @property
    def scores(self) -> list[float]:
        raise NotImplementedError

    @property
    def pick(self) -> int:
        return int(np.argmax(self.scores)) if self.n else -1


class Full(_Schedule):
    def __init__(self, n: int):
        super().__init__(n)
        self._round = [(i, j) for i in range(n) for j in range(n) if i != j]

    @property
    def scores(self) -> list[float]:
        m = np.zeros((self.n, self.n))
        for (i, j), v in self.obs.items():
            m[i, j] = v
        return max_logits(m).tolist()


def _own_side_weights(n: int, pairs) -> np.ndarray:
    """W[i, r] = +1 where pair r shows i first, -1 where second: W @ values sums each one's own side."""
    w = np.zeros((n, len(pairs)))
    for r, (i, j) in enumerate(pairs):
        w[i, r] += 1.0
        w[j, r] -= 1.0
    return w


def _own_side_means(n: int, obs: dict) -> np.ndarray:
    """Mean over each candidate's comparisons of its own side's logit (+ shown first, - shown second)."""
    tot, cnt = np.zeros(n), np.zeros(n)
    for (i, j), v in obs.items():
        tot[i] += v
        tot[j] -= v
        cnt[i] += 1
        cnt[j] += 1
    return np.divide(tot, cnt, out=np.zeros(n), where=cnt > 0)


def _design(n: int, pairs) -> np.ndarray:
    """Rows of the model logit(i, j) ~ f_i - f_j + g_i + g_j + c over columns (f, g, c), one per pair."""
    x = np.zeros((len(pairs), 2 * n + 1))
    for r, (i, j) in enumerate(pairs):
        x[r, i] += 1.0
        x[r, j] -= 1.0
        x[r, n + i] += 1.0
        x[r, n + j] += 1.0
        x[r, 2 * n] = 1.0
    return x


def lsq_strengths(n: int, obs: dict, position_effects: bool = True) -> np.ndarray:
    """Least squares of logit(i, j) ~ f_i - f_j + g_i + g_j + c over the observed entries: f the
    strength, g a candidate's own position effect (what it adds in either position, which a pair seen
    in one order cannot tell from strength otherwise), c the position bias; sum f = sum g = 0. On the
    full matrix f = max_logits / 2 exactly (the symmetric terms cancel in M_ij - M_ji).
    position_effects=False drops g (the "lsq_plain" rule)."""
    rows = len(obs)
    a = np.zeros((rows + 2, 2 * n + 1))
    a[:rows] = _design(n, list(obs))
    y = np.zeros(rows + 2)
    y[:rows] = list(obs.values())
    a[rows, :n] = 1.0  # sum f = 0 and sum g = 0: one solution whatever the design
    a[rows + 1, n: 2 * n] = 1.0
    if not position_effects:
        a[:, n: 2 * n] = 0.0
    return np.linalg.lstsq(a, y, rcond=None)[0][:n]


class Sampled(_Schedule):
    def __init__(self, n: int, rng: np.random.Generator, opponents: int = DEFAULT_OPPONENTS,
                 refine_top: int = DEFAULT_REFINE_TOP,
                 rule: str | None = None):
        super().__init__(n)
        if opponents < 1 or refine_top < 1:
            raise ValueError(f"opponents={opponents}, refine_top={refine_top}: both must be >= 1")
        self.refine_top, self.rule = refine_top, rule or LEADER_RULE
        if self.rule not in LEADER_RULES:
            raise ValueError(f"unknown leader rule {self.rule!r}; one of {', '.join(LEADER_RULES)}")
        self._round = _cyclic_round(n, rng, opponents)
        self.stage = 1
        self.leaders: list[int] = []

    def _next_round(self):
        if self.stage != 1:
            return []
        self.stage = 2
        self.r1 = _own_side_means(self.n, self.obs)
        self.leaders = [int(i) for i in np.argsort(-self.r1, kind="stable")[: self.refine_top]]
        return [(a, b) for a in self.leaders for b in self.leaders if a != b and (a, b) not in self.obs]

    @property
    def scores(self) -> list[float]:
        if not self.leaders:  # N < 2: nothing was compared
            return _own_side_means(self.n, self.obs).tolist()
        if self.rule in ("lsq", "lsq_plain"):
            lead = lsq_strengths(self.n, self.obs, self.rule == "lsq")[self.leaders]
        elif self.rule == "mean":
            lead = _own_side_means(self.n, self.obs)[self.leaders]
        else:  # sub
            sub = np.array([[self.obs.get((a, b), 0.0) for b in self.leaders] for a in self.leaders])
            lead = max_logits(sub)
        out = self.r1.copy()
        others = [i for i in range(self.n) if i not in self.leaders]
        if others:  # the others below every leader, in round-1 order
            out[others] += lead.min() - 1.0 - self.r1[others].max()
        out[self.leaders] = lead
        return out.tolist()


class Race(_Schedule):
    def __init__(self, n: int, rng: np.random.Generator, z: float = DEFAULT_Z, opponents: int = DEFAULT_RACE_OPPONENTS,
                 min_dof: int = DEFAULT_RACE_MIN_DOF):
        super().__init__(n)
        if not z >= 0 or opponents < 1 or min_dof < 1:
            raise ValueError(f"z={z}, opponents={opponents}, min_dof={min_dof}: z must be >= 0, opponents and "
                             "min_dof >= 1")
        self.z, self.rng, self.min_dof = float(z), rng, int(min_dof)
        # per candidate, kept as the rounds are fed (re-reading every comparison each round cost ~2.5x):
        # own-side values played, their sum and sum of squares, times shown first / second
        self.k, self.sum, self.sq = np.zeros(n), np.zeros(n), np.zeros(n)
        self.firsts, self.seconds = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
        self._round = _cyclic_round(n, rng, opponents)

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """(predicted MaxLogits scores, variance of each one's gap to the predicted leader's).

        The prediction of score i: its played own-side values plus the fit's values of its unplayed
        entries (logit(i, j) ~ f_i - f_j + g_i + g_j + c by least squares over the played ones), so it
        is MaxLogits itself once the matrix is complete. The error of a gap is the unplayed entries'
        noise around the fit plus the fit's own error: sigma^2 (|d|^2 + d' X_U (X_P'X_P)^+ X_U' d) for d
        the gap's weights on the unplayed entries (the usual prediction variance of a linear model).
        sigma^2: the residual variance once the fit has min_dof degrees of freedom; before that the
        pooled spread of each candidate's own played values (larger: opponents' strengths count as noise)."""
        n, played = self.n, list(self.obs)
        unplayed = [(i, j) for i in range(n) for j in range(n) if i != j and (i, j) not in self.obs]
        xp, xu = _design(n, played), _design(n, unplayed)
        y = np.fromiter(self.obs.values(), dtype=np.float64, count=len(played))
        # one eigendecomposition gives both the pseudo-inverse of X_P'X_P and the design's rank
        eig, vec = np.linalg.eigh(xp.T @ xp)
        kept = eig > 1e-9 * max(float(eig[-1]), 1.0)
        gram_inv = (vec[:, kept] / eig[kept]) @ vec[:, kept].T
        beta = gram_inv @ (xp.T @ y)
        dof = len(played) - int(kept.sum())
        if dof >= self.min_dof:
            resid = y - xp @ beta
            s2 = float(resid @ resid) / dof
        else:
            k = self.k
            ss = float(np.sum(self.sq - np.divide(self.sum ** 2, k, out=np.zeros(n), where=k > 0)))
            pooled_dof = float(k.sum() - (k > 0).sum())
            s2 = max(ss, 0.0) / pooled_dof if pooled_dof > 0 else float("inf")
        own_p, own_u = _own_side_weights(n, played), _own_side_weights(n, unplayed)
        pred = own_p @ y + own_u @ (xu @ beta)
        d = own_u[int(np.argmax(pred))][None, :] - own_u  # each gap's weights on the unplayed entries
        h = xu @ gram_inv @ xu.T
        var = s2 * (np.einsum("bu,bu->b", d, d) + np.einsum("bu,uv,bv->b", d, h, d))
        return pred / n, var / n ** 2  # MaxLogits is a mean over N (aggregate.max_logits)

    def _next_round(self):
        for i, j in self._round:  # the round just fed
            v = self.obs[(i, j)]
            self.k[[i, j]] += 1
            self.sum[i] += v
            self.sum[j] -= v
            self.sq[[i, j]] += v * v
            self.firsts[i] += 1
            self.seconds[j] += 1
        if self.n < 2:
            return []
        est, var = self.estimate()
        a = int(np.argmax(est))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (est[a] - est) / np.sqrt(var)  # each gap in standard errors
        t[a] = np.inf
        t[np.isnan(t)] = np.inf  # 0/0: nothing of a's nor b's left to play, so decided
        b = int(np.argmin(t))
        if t[b] >= self.z:
            return []
        direct = [p for p in ((a, b), (b, a)) if p not in self.obs]
        if direct:
            return direct
        new: list[tuple[int, int]] = []
        for c in (a, b):  # one more comparison each, in the position it has played less
            for first in ((True, False) if self.firsts[c] <= self.seconds[c] else (False, True)):
                opts = [p for p in ((c, j) if first else (j, c) for j in range(self.n) if j != c)
                        if p not in self.obs and p not in new]
                if opts:
                    new.append(opts[int(self.rng.integers(len(opts)))])
                    break
        return new

    @property
    def scores(self) -> list[float]:
        return self.estimate()[0].tolist() if self.n > 1 else [0.0] * self.n


class Knockout(_Schedule):
    def __init__(self, n: int, rng: np.random.Generator):
        super().__init__(n)
        self.alive = [int(x) for x in rng.permutation(n)]
        self.reached = [0] * n  # rounds survived (a bye counts): the winner alone has the most
        self._round = self._matches()

    def _matches(self):
        return [p for k in range(0, len(self.alive) - 1, 2)
                for p in ((self.alive[k], self.alive[k + 1]), (self.alive[k + 1], self.alive[k]))]

    def _next_round(self):
        nxt = []
        for k in range(0, len(self.alive) - 1, 2):
            a, b = self.alive[k], self.alive[k + 1]
            nxt.append(a if self.obs[(a, b)] - self.obs[(b, a)] > 0 else b)
        if len(self.alive) % 2:
            nxt.append(self.alive[-1])  # the bye
        for w in nxt:
            self.reached[w] += 1
        self.alive = nxt
        return self._matches()

    @property
    def scores(self) -> list[float]:
        return [float(r) for r in self.reached]


def _cyclic_round(n: int, rng: np.random.Generator, opponents: int) -> list[tuple[int, int]]:
    """Round 1 of `sampled` and `race`: over a seeded permutation p, (p[m], p[(m + d) % N]) for each
    shift d of _shifts and every m: each candidate shown first and second `opponents` times."""
    perm = [int(x) for x in rng.permutation(n)]
    return [(perm[m], perm[(m + d) % n]) for d in _shifts(n, opponents) for m in range(n)]


def _shifts(n: int, opponents: int) -> list[int]:
    """The cyclic shifts of round 1: d = 1..opponents, without one that repeats an unordered pair."""
    shifts: list[int] = []
    for d in range(1, opponents + 1):
        d %= max(n, 1)
        if d and d not in shifts and (n - d) not in shifts:
            shifts.append(d)
    return shifts


def max_forward(name: str, n: int, opponents: int = DEFAULT_OPPONENTS, refine_top: int = DEFAULT_REFINE_TOP,
                **_settings) -> int:
    """The most forward passes a schedule spends on N candidates (the cost plan's number; `race` may
    play up to the full matrix on a close prompt)."""
    if name in ("full", "race"):
        return n * (n - 1)
    if name == "knockout":
        return 2 * max(n - 1, 0)
    k = min(refine_top, n)
    return min(n * (n - 1), n * len(_shifts(n, opponents)) + k * (k - 1))


def make(name: str, n: int, seed: int, index: int = 0, **settings):
    """The schedule `name` for example number `index` of N candidates (seeded by seed and index);
    `settings` are the schedule's own (sampled: opponents, refine_top, rule; race: z, opponents)."""
    rng = np.random.default_rng([int(seed), int(index)])
    if name == "full":
        return Full(n)
    if name == "sampled":
        return Sampled(n, rng, **settings)
    if name == "race":
        return Race(n, rng, **settings)
    if name == "knockout":
        return Knockout(n, rng)
    raise ValueError(f"unknown selection schedule {name!r}; one of {', '.join(SCHEDULES)}")


def play_matrix(sched, m: np.ndarray):
    """Play a schedule on a precomputed full matrix (M[i, j] = logit(i first, j second)); returns it."""
    while sched.pending():
        sched.feed({(i, j): float(m[i, j]) for i, j in sched.pending()})
    return sched


# the best-of-N target: >= 95% top-1 agreement with full MaxLogits with <= 25% of its N(N-1) passes
TARGET_AGREEMENT, TARGET_SHARE = 0.95, 0.25


def grid_cells(opponents=(1, 2, 3), refine_top=(2, 3, 4, 5), rules=(LEADER_RULE,),
               race_z=(1.0, 1.5, 2.0, 2.5, 3.0)) -> list[tuple[str, dict]]:
    """The cells of a schedule grid: (schedule, make() keywords): full, knockout, `sampled` for every
    rule x opponents x refine_top, then `race` for every z (one opponent in round 1)."""
    cells: list[tuple[str, dict]] = [("full", {}), ("knockout", {})]
    cells += [("sampled", {"opponents": int(o), "refine_top": int(k), "rule": r}) for r in rules for o in opponents
              for k in refine_top]
    cells += [("race", {"z": float(z)}) for z in race_z]
    return cells


# the grid the evaluate stage draws (results/<run>/plots/select_curve.csv): 19 cells
DEFAULT_GRID = grid_cells()


def cell_label(row: dict) -> str:
    """A short name of a grid cell: "full", "knockout", "o2 k3" (with the rule when not the default),
    "race z1.5"."""
    if row["schedule"] == "race":
        return f"race z{row['z']:g}"
    if row["schedule"] != "sampled":
        return row["schedule"]
    rule = "" if row.get("rule") in (None, LEADER_RULE) else f" {row['rule']}"
    return f"o{row['opponents']} k{row['refine_top']}{rule}"


def simulate_grid(matrices, seed=0, grid=None) -> list[dict]:
    """Play every cell of `grid` (grid_cells(); default DEFAULT_GRID) on precomputed full matrices
    (M[i, j] = logit(i first, j second)), no model call: a schedule's passes are entries of the matrix.
    `seed`: one seed or a sequence of seeds (the permutations differ by seed; everything is pooled over
    seeds x examples, seed-major; example e of seed s plays make(..., s, e), as `select` does for the
    example at position e). One row per cell: schedule, opponents, refine_top, rule, z (None where the
    schedule has none), prompts, seeds, passes_per_prompt (mean forward passes), passes_pct (% of
    N(N-1), pooled), top1_agreement (share of picks that are full MaxLogits' top-1, an answer tied for
    first included, 0..1),
    top1_agreement_unique (the same over examples whose MaxLogits top-1 is not tied; NaN if none),
    meets_target, and per (seed, example): picks, scores, n_forward."""
    seeds = [int(seed)] if np.ndim(seed) == 0 else [int(x) for x in seed]
    mats = [np.asarray(m, dtype=np.float64) for m in matrices]
    # MaxLogits' top-1 as a set: identical answers get identical logits, so a tie for first is exact,
    # and any answer of the tie is MaxLogits' pick
    tops = [set(np.flatnonzero(sc >= sc.max() - 1e-9).tolist()) for sc in map(max_logits, mats)] * len(seeds)
    unique = [len(t) == 1 for t in tops]
    size = sum(m.shape[0] * (m.shape[0] - 1) for m in mats) * len(seeds)
    rows = []
    for name, kw in (DEFAULT_GRID if grid is None else grid):
        picks, passes, scores = [], [], []
        for s in seeds:
            for e, m in enumerate(mats):
                sched = play_matrix(make(name, m.shape[0], s, e, **kw), m)
                picks.append(sched.pick)
                passes.append(sched.n_forward)
                scores.append(sched.scores)
        agree = [a in t for a, t in zip(picks, tops)]
        agree_u = [a for a, u in zip(agree, unique) if u]
        row = {"schedule": name,
               "opponents": kw.get("opponents", DEFAULT_OPPONENTS) if name == "sampled" else None,
               "refine_top": kw.get("refine_top", DEFAULT_REFINE_TOP) if name == "sampled" else None,
               "rule": (kw.get("rule") or LEADER_RULE) if name == "sampled" else None,
               "z": float(kw.get("z", DEFAULT_Z)) if name == "race" else None,
               "prompts": len(mats), "seeds": len(seeds),
               "passes_per_prompt": float(np.mean(passes)) if passes else float("nan"),
               "passes_pct": 100.0 * float(np.sum(passes)) / size if size else float("nan"),
               "top1_agreement": float(np.mean(agree)) if agree else float("nan"),
               "top1_agreement_unique": float(np.mean(agree_u)) if agree_u else float("nan")}
        row["meets_target"] = bool(row["top1_agreement"] >= TARGET_AGREEMENT
                                   and row["passes_pct"] <= 100 * TARGET_SHARE)
        row.update(picks=picks, scores=scores, n_forward=passes)
        rows.append(row)
    return rows


def run(model, tokenizer, sources, candidates, schedules, **infer_kw):
    """Play every example's schedule, one round of all examples per `infer.pair_logits` call."""
    from llmblend.ranker import infer

    rnd = 0
    while True:
        active = [e for e, s in enumerate(schedules) if s.pending()]
        if not active:
            return schedules
        rnd += 1
        pairs = [schedules[e].pending() for e in active]
        logits = infer.pair_logits(model, tokenizer, [sources[e] for e in active],
                                   [candidates[e] for e in active], pairs, desc=f"select round {rnd}",
                                   **infer_kw)
        for e, plist, vals in zip(active, pairs, logits):
            schedules[e].feed(dict(zip(plist, vals)))


def select_on_matrices(matrices, schedule: str, seed: int, settings: dict | None = None):
    """`select` played on each example's full comparison matrix: the same seeded schedules, each
    logit read from the matrix instead of run (what the workflow does when it has the matrices)."""
    scheds = [play_matrix(make(schedule, len(m), seed, e, **(settings or {})), m) for e, m in enumerate(matrices)]
    return [s.scores for s in scheds], [s.n_forward for s in scheds]


def select(model, tokenizer, sources, candidates, schedule: str, seed: int, settings: dict | None = None,
           **infer_kw):
    """Scores (higher = better; the pick is the argmax) and forward passes of each example under a
    selection schedule (SCHEDULES) with its `settings` (make()); infer_kw go to infer.pair_logits."""
    scheds = [make(schedule, len(c), seed, e, **(settings or {})) for e, c in enumerate(candidates)]
    run(model, tokenizer, sources, candidates, scheds, **infer_kw)
    return [s.scores for s in scheds], [s.n_forward for s in scheds]
