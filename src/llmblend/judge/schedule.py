"""Which pairs of an example are judged, in which shown order.

A schedule works in rounds: `pending()` gives the (shown A, shown B) pairs of the current round,
`feed({(a, b): label})` records their labels and moves on; an empty `pending()` means done. The
engine runs one round of every example at once, so rounds parallelise across examples.

- `all` (the paper): every unordered pair, one round, C(N, 2) pairs.
- `knockout`: a single-elimination bracket over a seeded shuffle of the candidates, N - 1 pairs in
  ceil(log2 N) rounds. Its winner has the most wins (log2 N, every other candidate has at least one
  loss), so it is GPT-Rank's rank 1 over the judged pairs. A tie or a failed label advances a seeded
  coin's pick. Cheaper, but the rest of the ranking is coarse: see benchmarks/bench_judge.py.

The shown order of each pair is a seeded coin flip (position bias): `shown_order(seed, id, a, b)`.
"""

from __future__ import annotations

import hashlib
import itertools
import random

from llmblend.judge.labels import A_BETTER, B_BETTER

SCHEDULES = ("all", "knockout")


def _rng(*parts) -> random.Random:
    h = hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def shown_order(seed: int, example_id: str, a: str, b: str) -> tuple[str, str]:
    """(a, b) or (b, a), by a coin that depends only on the seed, the example and the (unordered) pair."""
    lo, hi = sorted((a, b))
    return (lo, hi) if _rng(seed, example_id, lo, hi).random() < 0.5 else (hi, lo)


class AllPairs:
    def __init__(self, models, seed, example_id):
        self._pairs = [shown_order(seed, example_id, a, b) for a, b in itertools.combinations(models, 2)]
        self._done = False

    def pending(self):
        return [] if self._done else list(self._pairs)

    def feed(self, labels: dict) -> None:
        self._done = True

    @staticmethod
    def n_pairs(n: int) -> int:
        return n * (n - 1) // 2


class Knockout:
    def __init__(self, models, seed, example_id):
        self._rng = _rng(seed, example_id, "knockout")
        self._seed, self._id = seed, example_id
        self.alive = list(models)
        self._rng.shuffle(self.alive)
        self._round: list[tuple[str, str]] = []
        self._make_round()

    def _make_round(self):
        self._round = []
        if len(self.alive) > 1:
            for i in range(0, len(self.alive) - 1, 2):
                self._round.append(shown_order(self._seed, self._id, self.alive[i], self.alive[i + 1]))

    def pending(self):
        return list(self._round)

    def feed(self, labels: dict) -> None:
        winners = []
        for a, b in self._round:
            label = labels.get((a, b))
            if label == A_BETTER:
                winners.append(a)
            elif label == B_BETTER:
                winners.append(b)
            else:
                winners.append(self._rng.choice((a, b)))
        if len(self.alive) % 2:
            winners.append(self.alive[-1])  # the bye
        self.alive = winners
        self._make_round()

    @property
    def winner(self) -> str | None:
        return self.alive[0] if len(self.alive) == 1 else None

    @staticmethod
    def n_pairs(n: int) -> int:
        return max(n - 1, 0)


def make_schedule(name: str, models, seed: int, example_id: str):
    if name == "all":
        return AllPairs(models, seed, example_id)
    if name == "knockout":
        return Knockout(models, seed, example_id)
    raise ValueError(f"unknown schedule {name!r}; one of {SCHEDULES}")


def n_pairs(name: str, n: int) -> int:
    return {"all": AllPairs, "knockout": Knockout}[name].n_pairs(n)
