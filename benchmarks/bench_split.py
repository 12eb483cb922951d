"""The data stage at the paper's full size, offline: demo generator -> dedupe/filter -> 100k/5k/5k.

    python benchmarks/bench_split.py [--n-items 160000]

Prints wall time and peak memory (max RSS) of the whole stage, plus the manifest's counts.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmblend.config import load_config  # noqa: E402
from llmblend.data.prepare import prepare_splits  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-items", type=int, default=170000, help="demo items drawn before deduplication")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        over = {"run": "bench", "data": {"sources": [{"type": "demo", "name": "demo", "n_items": args.n_items,
                                                      # facts, lists and constraints have only a few hundred
                                                      # distinct items each; at this size they are mostly
                                                      # duplicates, so draw mainly from the open-ended families
                                                      "weights": {"arithmetic": 1.0, "rewrite": 1.0, "facts": 0.02,
                                                                  "lists": 0.02, "constraints": 0.02}}],
                                         "split": {"mode": "shuffle",
                                                   "sizes": {"val": 5000, "test": 5000, "train": 100000}}}}
        prof = Path(tmp) / "bench.yaml"
        prof.write_text(yaml.safe_dump(over))
        cfg = load_config([str(ROOT / "params.yaml"), str(prof)])
        t0 = time.perf_counter()
        m = prepare_splits(cfg, Path(tmp) / "splits")
        dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n_items_drawn": args.n_items, "kept_after_filters": m["kept_after_filters"],
                      "dropped": m["dropped"], "unused_after_split": m["unused_after_split"],
                      "splits": {k: v["records"] for k, v in m["splits"].items()},
                      "seconds": round(dt, 1), "peak_rss_mb": round(peak_mb)}, indent=1))


if __name__ == "__main__":
    main()
