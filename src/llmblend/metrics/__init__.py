"""Reference-based metrics (BARTScore, a causal-LM log-likelihood, BLEURT, BERTScore, BLEU, ROUGE)
and the stage that writes them into each candidate's `scores` (see docs/metrics.md)."""
