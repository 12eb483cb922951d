"""Pairwise judge labels (GPT-Rank): backends (openai, replay, rubric), cache, schedules, GPT-Rank.

Other stages import `llmblend.judge.gpt_rank` (ranks, ">= X" helpers) and `llmblend.judge.labels`
(label vocabulary, `label_for`). See docs/judge.md.
"""
