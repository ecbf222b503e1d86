"""Pruning targets of issue 10, measured side by side in one run.

    python bench/bench_pruning.py            # about 1 minute on 2 CPU cores (more under load)

Accuracies come from the shipped full runs (``data/checkpoints/pruned_results.json``, made by
``tools/train_pruned.py`` on the first 5 000 test images) and are re-measured here on the same
images from the shipped checkpoints (``--no-eval`` skips that). Latencies are medians of interleaved runs at batch 32 on
2 threads, float32 (NCHW, eager) and int8 (eager PTQ on the best engine of this machine).

Targets (printed as PASS/MISS, never asserted; a loaded machine can miss the latency one):
  >= 80% global sparsity with <= 0.5 points of accuracy lost after fine-tuning;
  half of the inner channels removed: >= 1.5x lower float32 latency at batch 32 on 2 threads,
  accuracy within 1 point of the dense model after fine-tuning;
  Deep Compression >= 10x smaller than float32 with <= 1 point lost.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch

from qlearn.bridge.data import make_loader
from qlearn.bridge.macs import count_macs, count_nonzero_params, count_params, interleaved_latency
from qlearn.bridge.pretrained import load_pretrained
from qlearn.bridge.ptq import best_engine, evaluate, quantize_ptq, quiet_quantization_warnings
from qlearn.bridge.pruning import apply_masks, global_masks, load_pruned, pruned_results, remove_pruning


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-eval", action="store_true", help="skip re-measuring accuracy (use the JSON)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    engine = best_engine()
    print(f"torch {torch.__version__}, {platform.machine()} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} threads, int8 engine {engine}")
    results = pruned_results()
    dense = load_pretrained()
    g80 = load_pruned("global80")
    small = load_pruned("channels50")
    sparse90 = remove_pruning(apply_masks(copy.deepcopy(dense), global_masks(dense, 0.9)))

    acc = {"dense": results["base"]["accuracy"], "global80": results["global80"]["accuracy"],
           "channels50": results["channels50"]["accuracy"]}
    if not args.no_eval:
        test = list(make_loader("test", 500, limit=results["meta"]["test_images"]))
        with torch.no_grad():
            measured = {k: evaluate(m, test) for k, m in (("dense", dense), ("global80", g80), ("channels50", small))}
        for k, v in measured.items():
            print(f"accuracy {k:10s}: shipped run {acc[k]:.2%}, re-measured now {v:.2%}")
        acc = measured

    x = make_loader("test", 32).dataset.data[:32].contiguous()
    calib = list(make_loader("train", 128, limit=512, augment=False, shuffle=False))
    with quiet_quantization_warnings():
        q_dense = quantize_ptq(dense, calib, engine=engine, calib_batches=len(calib))
        q_small = quantize_ptq(small, calib, engine=engine, calib_batches=len(calib))
    t = interleaved_latency({
        "float32 dense": (dense, x),
        "float32 90% unstructured": (sparse90, x),
        "float32 channels 50%": (small, x),
        "int8 dense": (q_dense, x, engine),
        "int8 channels 50%": (q_small, x, engine),
    }, repeats=args.repeats, warmup=3)
    macs = {"dense": count_macs(dense)["total"], "sparse90": count_macs(sparse90)["total"],
            "small": count_macs(small)["total"]}

    print(f"\n{'model':26s} {'params':>8s} {'nonzero':>8s} {'MACs/img':>10s} {'median ms':>10s} {'speed-up':>9s}")
    rows = [("float32 dense", dense, macs["dense"]), ("float32 90% unstructured", sparse90, macs["sparse90"]),
            ("float32 channels 50%", small, macs["small"]), ("int8 dense", dense, macs["dense"]),
            ("int8 channels 50%", small, macs["small"])]
    for name, model, m in rows:
        print(f"{name:26s} {count_params(model):8d} {count_nonzero_params(model):8d} {m:10d} "
              f"{1e3 * t[name]:10.2f} {t['float32 dense'] / t[name]:8.2f}x")

    table = results["deep_compression"]["table"]
    dcr = results["deep_compression"]
    print(f"\nDeep Compression of the 80%-sparse model ({dcr['n_bits']}-bit codes, {dcr['small_bits']} bits for layers "
          f"under {dcr['small_layer']} weights, {dcr['index_bits']}-bit relative indices), accuracy on the test subset:")
    print(f"{'stage':10s} {'bits/weight':>11s} {'bytes':>9s} {'x smaller':>9s} {'accuracy':>9s}")
    for stage, row in table.items():
        print(f"{stage:10s} {row['bits_per_weight']:11.3f} {row['bytes']:9d} {row['ratio_vs_float32']:8.2f}x "
              f"{row['accuracy']:9.2%}")

    base = acc["dense"]
    sparsity = results["global80"]["sparsity"]
    lost80 = 100 * (base - acc["global80"])
    speed = t["float32 dense"] / t["float32 channels 50%"]
    lost_ch = 100 * (base - acc["channels50"])
    dc = table["huffman"]
    lost_dc = 100 * (table["float32"]["accuracy"] - dc["accuracy"])
    print()
    print(f"{verdict(sparsity >= 0.8 and lost80 <= 0.5)} global sparsity {sparsity:.1%} loses {lost80:.2f} points "
          f"(target: >= 80% sparsity, <= 0.5 points)")
    print(f"{verdict(speed >= 1.5 and lost_ch <= 1.0)} channels 50%: float32 batch 32 speed-up {speed:.2f}x, "
          f"{lost_ch:+.2f} points lost (target: >= 1.5x, <= 1 point)")
    print(f"{verdict(dc['ratio_vs_float32'] >= 10 and lost_dc <= 1.0)} Deep Compression {dc['ratio_vs_float32']:.1f}x "
          f"smaller, {lost_dc:.2f} points lost (target: >= 10x, <= 1 point)")
    print(f"(90% unstructured sparsity on dense kernels: {t['float32 dense'] / t['float32 90% unstructured']:.2f}x; "
          f"{time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
