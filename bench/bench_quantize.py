"""Time qlearn's quantize and fake_quantize against torch's fused kernels, side by side, in one run.

    python bench/bench_quantize.py [--n 10000000] [--repeats 15] [--threads 2]

Prints medians (the machines are shared and noisy, so medians and ratios, not means) and the ratio
qlearn / torch. The target for quantize is a ratio of at most 4. Nothing here asserts: a timing
is a measurement, not a test. A straightforward numpy version is timed as well, to show what the
blocked implementation buys.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

import qlearn

warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated")


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def naive_quantize(x, scale, zero_point, qmin, qmax):
    """The textbook numpy one-liner: a full-size temporary for every step."""
    return np.clip(np.rint(x * (np.float32(1) / np.float32(scale))) + zero_point, qmin, qmax).astype(np.int8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.n, dtype=np.float32)
    tx = torch.from_numpy(x)
    scale, zp, qmin, qmax = np.float32(0.02), 3, -128, 127
    # the same codes, or the comparison means nothing
    assert np.array_equal(
        qlearn.quantize(x, scale, zp, qmin, qmax),
        torch.quantize_per_tensor(tx, float(scale), zp, torch.qint8).int_repr().numpy(),
    )

    # interleave the rounds so that background load hits every contender alike
    rows = {name: [] for name in ("qlearn quantize", "torch quantize_per_tensor", "numpy one-liner",
                                  "qlearn fake_quantize", "torch fake_quantize_per_tensor_affine")}
    calls = {
        "qlearn quantize": lambda: qlearn.quantize(x, scale, zp, qmin, qmax),
        "torch quantize_per_tensor": lambda: torch.quantize_per_tensor(tx, float(scale), zp, torch.qint8),
        "numpy one-liner": lambda: naive_quantize(x, scale, zp, qmin, qmax),
        "qlearn fake_quantize": lambda: qlearn.fake_quantize(x, scale, zp, qmin, qmax),
        "torch fake_quantize_per_tensor_affine": lambda: torch.fake_quantize_per_tensor_affine(
            tx, float(scale), zp, qmin, qmax),
    }
    for _ in range(3):
        for name, fn in calls.items():
            rows[name].append(median_ms(fn, max(1, args.repeats // 3)))
    ms = {name: statistics.median(v) for name, v in rows.items()}

    print(f"{args.n:,} float32 values, torch threads = {torch.get_num_threads()}, numpy single-threaded")
    for name, value in ms.items():
        print(f"  {name:<40s} {value:8.2f} ms (median)")
    q_ratio = ms["qlearn quantize"] / ms["torch quantize_per_tensor"]
    fq_ratio = ms["qlearn fake_quantize"] / ms["torch fake_quantize_per_tensor_affine"]
    naive_ratio = ms["numpy one-liner"] / ms["torch quantize_per_tensor"]
    print(f"ratio quantize      qlearn / torch = {q_ratio:5.2f}x  (target <= 4x: {'PASS' if q_ratio <= 4 else 'MISS'})")
    print(f"ratio fake_quantize qlearn / torch = {fq_ratio:5.2f}x")
    print(f"ratio numpy one-liner      / torch = {naive_ratio:5.2f}x")


if __name__ == "__main__":
    main()
