"""Float32 vs int8 (post-training quantization, eager mode): speed, size and accuracy, measured.

    python bench/bench_resnet_ptq.py            # about 2-5 minutes on 2 CPU cores

Two models:
- our Fashion-MNIST ResNet (``qlearn.bridge.load_pretrained()``, inputs 1x28x28), calibrated on
  1 024 training images and evaluated on the full test set;
- torchvision's quantizable ResNet-18 (random weights, inputs 3x224x224), calibrated on random
  images: its accuracy means nothing, its speed and size are those of the real network.

The float32 baseline is the best we could make: BatchNorm folded into the convolutions and the
faster of NCHW / channels_last (``best_float_baseline``). Latencies are medians over repeated
runs on 2 threads. The int8 models run on each quantized engine this torch build has among x86,
fbgemm and qnnpack (an x86 PC has all three, Apple silicon and ARM Linux only qnnpack, Windows no
qnnpack); each time the faster of NCHW / channels_last input is kept. The accuracies and the
targets use the best engine this machine has (``best_engine()``: x86 on a PC, qnnpack on a Mac).

Targets (printed as PASS/MISS, never asserted; a machine under load can miss them):
  int8 ResNet-18 at batch 32 is >= 2.5x faster than the float32 baseline (best engine);
  its int8 state_dict is >= 3.9x smaller on disk;
  per-channel PTQ of our ResNet loses <= 0.3 points of test accuracy.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

import torch
from torchvision.models.quantization import resnet18

from qlearn.bridge import (
    best_engine,
    best_float_baseline,
    evaluate,
    load_pretrained,
    make_loader,
    measure_latency,
    model_size_bytes_on_disk,
    pretrained_info,
    quantize_ptq,
    quiet_quantization_warnings,
    supported_engines,
)

ENGINES = [e for e in ("x86", "fbgemm", "qnnpack") if e in supported_engines()]
BEST = best_engine()  # x86 on an x86 PC, qnnpack on Apple silicon and ARM Linux


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def interleaved_latency(candidates, repeats, warmup):
    """Median seconds per candidate ``name -> (model, x, engine)``, timed round-robin.

    Every round runs each candidate once, so a burst of load from other processes slows them all
    alike instead of falling on whichever was being timed at that moment. ``engine`` (or None for
    float models) is selected before each int8 call: quantized ops dispatch on the global engine.
    """
    times = {name: [] for name in candidates}
    with torch.inference_mode():
        for r in range(warmup + repeats):
            for name, (model, x, engine) in candidates.items():
                if engine is not None:
                    torch.backends.quantized.engine = engine
                start, load_start = time.perf_counter(), os.getloadavg()[0]
                model(x)
                if r >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_model(name, model, calib, inputs, repeats):
    """Latency of the best float32 baseline and of int8 per engine, at each batch in ``inputs``."""
    print(f"\n== {name} ==")
    fused, _ = best_float_baseline(model)  # BN folded; the layout is chosen below, by measuring
    nhwc = copy.deepcopy(fused).to(memory_format=torch.channels_last)
    qmodels = {e: quantize_ptq(model, calib, engine=e, calib_batches=len(calib)) for e in ENGINES}
    rows, speedups = [], {}
    for batch, x in inputs.items():
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        candidates = {
            ("float32", "contiguous"): (fused, x, None),
            ("float32", "channels_last"): (nhwc, x_nhwc, None),
        }
        for engine, qmodel in qmodels.items():
            candidates[(f"int8 {engine}", "contiguous")] = (qmodel, x, engine)
            if engine != "qnnpack" or ENGINES == ["qnnpack"]:  # qnnpack is slow on x86: one layout is enough
                candidates[(f"int8 {engine}", "channels_last")] = (qmodel, x_nhwc, engine)
        t = interleaved_latency(candidates, *repeats[batch])
        best = {}
        for (kind, fmt), seconds in t.items():  # keep the faster layout of each model
            if kind not in best or seconds < best[kind][0]:
                best[kind] = (seconds, fmt)
        t_float = best["float32"][0]
        for kind, (seconds, fmt) in best.items():
            rows.append((batch, kind, fmt, seconds, t_float / seconds))
            speedups[(batch, kind)] = t_float / seconds
    print(f"{'batch':>5}  {'model':13} {'layout':14} {'median ms':>10} {'speed-up':>9}")
    for batch, kind, fmt, seconds, ratio in rows:
        print(f"{batch:5d}  {kind:13} {fmt:14} {1e3 * seconds:10.2f} {ratio:8.2f}x")
    size_f, size_q = model_size_bytes_on_disk(model), model_size_bytes_on_disk(qmodels[BEST])
    print(f"size on disk: float32 {size_f / 1e6:.3f} MB, int8 {size_q / 1e6:.3f} MB, "
          f"ratio {size_f / size_q:.2f}x")
    return speedups, size_f / size_q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement at batch 1")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    print(f"torch {torch.__version__}, {platform.machine()} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} threads, quantized engines {ENGINES}")

    with quiet_quantization_warnings():
        # Our ResNet: accuracy first (per-channel and per-tensor), then speed.
        model = load_pretrained()
        info = pretrained_info()
        test_loader = make_loader("test", 1000)
        calib = list(make_loader("train", 128, augment=False, shuffle=True, seed=0))[:8]
        acc_float = evaluate(copy.deepcopy(model).to(memory_format=torch.channels_last), test_loader)
        print(f"\n== {info['model']}: accuracy on the 10 000 test images "
              f"({BEST} engine, 8 x 128 calibration images) ==")
        print(f"float32                      {100 * acc_float:6.2f} %")
        deltas = {}
        for per_channel in (True, False):
            for observer in ("minmax", "histogram"):
                q = quantize_ptq(model, calib, engine=BEST, per_channel=per_channel, observer=observer)
                acc = evaluate(q, test_loader)
                deltas[(per_channel, observer)] = acc_float - acc
                label = f"int8 {'per-channel' if per_channel else 'per-tensor '} {observer:9}"
                print(f"{label:28} {100 * acc:6.2f} %  (delta {100 * (acc - acc_float):+.2f} points)")

        x_test = next(iter(make_loader("test", 32)))[0]
        ours, size_ours = bench_model(
            info["model"], model, calib[:2],
            {1: x_test[:1], 32: x_test}, {1: (args.repeats * 5, 5), 32: (args.repeats, 2)},
        )

        g = torch.Generator().manual_seed(0)
        r18 = resnet18(weights=None, quantize=False).eval()
        calib18 = [torch.randn(8, 3, 224, 224, generator=g) for _ in range(2)]
        x18 = torch.randn(32, 3, 224, 224, generator=g)
        r18_results, size_r18 = bench_model(
            "torchvision quantizable ResNet-18 (random weights)", r18, calib18,
            {1: x18[:1], 32: x18}, {1: (args.repeats, 2), 32: (max(3, args.repeats // 2 - 1), 1)},
        )

    print("\n== targets (measured above, not asserted) ==")
    s = r18_results[(32, f"int8 {BEST}")]
    print(f"{verdict(s >= 2.5)}  int8 ResNet-18, batch 32, {BEST} engine: {s:.2f}x faster than the best float32 "
          "(target >= 2.5x)")
    print(f"{verdict(size_r18 >= 3.9)}  int8 ResNet-18 size on disk: {size_r18:.2f}x smaller (target >= 3.9x)")
    d = deltas[(True, "minmax")]
    print(f"{verdict(d <= 0.003)}  per-channel PTQ of {info['model']}: int8 - float32 = {-100 * d:+.2f} points "
          "(target: a loss <= 0.3)")
    print(f"(for information: {info['model']} int8 is {size_ours:.2f}x smaller, "
          f"{ours[(32, f'int8 {BEST}')]:.2f}x faster at batch 32 on {BEST})")
    load = os.getloadavg()[0]
    print(f"\nbench time {time.perf_counter() - start:.0f} s; load average {load_start:.1f} at the start, "
          f"{load:.1f} at the end")
    if max(load, load_start) > 1.5 * torch.get_num_threads():
        print("note: other processes were competing for the CPU; timings are noisy, run again on a quiet machine")


if __name__ == "__main__":
    main()
