"""Candidate generation: N generators answer every instruction (hf / openai / import backends),
sharded and resumable (shards.py), gathered into candidates/<split>.jsonl (gather.py)."""
