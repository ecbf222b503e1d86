"""Gradient compression, measured in one run: bytes and losses of lab 09's two experiments.

    python bench/bench_gradients.py [--steps 100] [--np-steps 200] [--timeout 300]

1. Real data-parallel training: 2 ``gloo`` worker processes, ``DistributedDataParallel``, a 784-64-10
   MLP on Fashion-MNIST, once per communication scheme (plain all-reduce, ``fp16_compress_hook``,
   PowerSGD rank 2, our int8 hook with stochastic rounding, one scale per bucket and error
   feedback). Bytes are what one worker sends; losses are on 1000 fixed test images.
2. The numpy experiment: logistic regression with 2 simulated workers and each compressor
   (``qlearn.compression.train_compressed``), bits one worker sends, test loss and accuracy.

Targets (printed as PASS/MISS, never asserted):

- the int8 hook sends at least 3.9x fewer bytes than float32 all-reduce, with a final test loss
  within 2% of it after the same steps;
- 1 bit per value (scaled sign) with error feedback sends at least 25x fewer bits than float32 and
  ends within 1 point of its accuracy on the small task (the numpy experiment).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qlearn.bridge.ddp_worker import run_ddp
from qlearn.compression import train_compressed
from qlearn.datasets import load_fashion_mnist

SEED = 9


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def numpy_experiment(steps: int) -> dict:
    images, labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    rng = np.random.default_rng(SEED)
    pick = rng.choice(len(images), size=12_000, replace=False)
    x, y = images[pick].reshape(-1, 784) / 255.0, labels[pick].astype(np.int64)
    test_pick = np.sort(rng.choice(len(test_images), size=1000, replace=False))
    x_test, y_test = test_images[test_pick].reshape(-1, 784) / 255.0, test_labels[test_pick].astype(np.int64)
    runs = {"float32 (none)": ("none", False), "int8 stochastic": ("stochastic8", False),
            "QSGD s=4": ("qsgd", False), "TernGrad": ("terngrad", False), "sign": ("sign", False),
            "sign + EF": ("sign", True), "top-1%": ("topk", False), "top-1% + EF": ("topk", True)}
    return {label: train_compressed(x, y, x_test, y_test, name, error_feedback=ef, workers=2, batch_size=64,
                                    steps=steps, lr=0.1, eval_every=20, seed=SEED)
            for label, (name, ef) in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="DDP steps per scheme")
    parser.add_argument("--np-steps", type=int, default=200, help="steps of the numpy experiment")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    start = time.perf_counter()
    ddp = run_ddp({"steps": args.steps}, world_size=2, timeout=args.timeout)
    ddp_seconds = time.perf_counter() - start
    schemes = ddp["config"]["schemes"]
    base = ddp["allreduce"]
    print(f"DDP, 2 gloo workers, {base['parameters']:,} parameters, {args.steps} steps, "
          f"{ddp_seconds:.1f} s including spawning")
    print(f"{'scheme':10s} {'bytes/worker':>13s} {'fewer':>7s} {'test loss':>10s} {'vs fp32':>8s} {'accuracy':>9s}")
    for scheme in schemes:
        log = ddp[scheme]
        print(f"{scheme:10s} {log['bytes_sent']:13,.0f} {base['bytes_sent'] / log['bytes_sent']:6.2f}x "
              f"{log['loss'][-1]:10.4f} {100 * (log['loss'][-1] / base['loss'][-1] - 1):+7.2f}% "
              f"{log['accuracy'][-1]:9.2%}")

    start = time.perf_counter()
    results = numpy_experiment(args.np_steps)
    np_seconds = time.perf_counter() - start
    none = results["float32 (none)"]
    print(f"\nnumpy logistic regression, 2 simulated workers, {args.np_steps} steps, d = {none['d']}, "
          f"{np_seconds:.1f} s")
    print(f"{'compressor':16s} {'bits/worker':>12s} {'fewer':>7s} {'test loss':>10s} {'accuracy':>9s}")
    for label, log in results.items():
        print(f"{label:16s} {log['bits'][-1]:12,d} {none['bits'][-1] / log['bits'][-1]:6.1f}x "
              f"{log['loss'][-1]:10.4f} {log['accuracy']:9.2%}")

    int8_ratio = base["bytes_sent"] / ddp["int8"]["bytes_sent"]
    int8_loss = ddp["int8"]["loss"][-1] / base["loss"][-1] - 1
    sign = results["sign + EF"]
    sign_ratio = none["bits"][-1] / sign["bits"][-1]
    sign_points = 100 * (sign["accuracy"] - none["accuracy"])
    print()
    print(f"{verdict(int8_ratio >= 3.9)} int8 hook sends {int8_ratio:.3f}x fewer bytes than fp32 all-reduce "
          f"(target >= 3.9x)")
    print(f"{verdict(abs(int8_loss) <= 0.02)} int8 hook final loss {100 * int8_loss:+.2f}% from fp32 all-reduce "
          f"(target within 2%)")
    print(f"{verdict(sign_ratio >= 25)} 1-bit + error feedback sends {sign_ratio:.1f}x fewer bits than float32 "
          f"(target >= 25x)")
    print(f"{verdict(sign_points >= -1)} 1-bit + error feedback accuracy {sign_points:+.2f} points from float32 "
          f"(target within 1 point)")


if __name__ == "__main__":
    main()
