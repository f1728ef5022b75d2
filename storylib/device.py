"""Where a model runs: the device, the CPU threads, mixed precision."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" → cuda if available, else mps, else cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def apply_thread_setting() -> None:
    """``torch.set_num_threads(STORYLIB_THREADS)`` when that variable is set; else leave torch alone."""
    threads = os.environ.get("STORYLIB_THREADS")
    if threads:
        torch.set_num_threads(int(threads))


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """Mixed precision on CUDA only (CPU autocast is slower than float32 for these models)."""
    return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp and device.type == "cuda")
