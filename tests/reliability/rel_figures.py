"""The figures the reliability suite reports (kills survived, faults injected, malformed inputs tried, ...).

Tests add to `FIGURES`; tests/reliability/conftest.py prints them at the end of the session and, when
RELIABILITY_FIGURES names a file, writes them there as JSON (the CI script keeps it).
"""

from collections import Counter

FIGURES: Counter = Counter()
