"""How many bytes the KV cache gets: the setting in bytes, else a share of the device's memory
(a GPU's total; on CPU the container's cgroup limit where one is set, else the machine's)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def device_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return min(int(text), physical)
    return physical


def cache_bytes(configured: int, fraction: float, device: torch.device) -> int:
    return configured or int(device_memory(device) * fraction)
