"""What the benchmarks read about processes and how they draw: CPU time from /proc, and
matplotlib when it is installed (the `bench` extra)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pyplot():
    """matplotlib.pyplot on a file backend, or None (with a word why) when not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e .[bench]): no plot", file=sys.stderr)
        return None
    return plt
