"""What the numbers were measured on: CPU, cores, memory, library versions, and this CPU's measured
fp32 matmul peak (the denominator of the model FLOPs utilisation figure)."""

from __future__ import annotations

import os
import platform
import time

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def matmul_peak_flops(n: int = 1024, seconds: float = 1.5) -> float:
    """Best fp32 FLOP/s of torch's square matmul at torch's thread count, a practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start))
    return best


def info(peak_seconds: float = 1.5) -> dict:
    import mlflow
    import onnxruntime
    import transformers

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "mlflow": mlflow.__version__,
        "cuda": torch.cuda.is_available(),
        "matmul_peak_gflops": round(matmul_peak_flops(seconds=peak_seconds) / 1e9, 1),
    }
