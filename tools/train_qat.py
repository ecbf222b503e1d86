"""Full QAT runs for lab 08: fine-tune the shipped ResNet with fake quantization in the loop.

Reproduce (about 5 CPU-minutes in all, single thread; the results file records the exact time):

    nice -n 10 .venv/bin/python tools/train_qat.py --out data/checkpoints

Each run starts from ``data/checkpoints/resnet14_fmnist.pt`` (float, 93.22 % test accuracy),
swaps every convolution and linear layer for a fake-quantized one
(``qlearn.bridge.qat.prepare_fake_quant``: first and last layer at 8 bits, as in LSQ), sets the
scales from 4 training batches (min-max: this is the PTQ baseline, measured too), then fine-tunes
weights and LSQ step sizes for ``steps`` batches of 64 augmented training images (a seeded,
shuffled subset of the 60 000: 6 400 to 12 800 images, a fraction of one epoch) with SGD,
Nesterov momentum 0.9 and a cosine learning rate. The budget is small on purpose (the machine
these were made on was a shared 2-core box); ``QAT_RUNS`` in ``qlearn/bridge/qat.py`` holds it.

Runs: ``w4a4`` (4-bit weights and activations) and ``w2a8`` (2-bit weights, 8-bit activations).
(``prepare_fake_quant`` also takes ``"ternary"`` and ``"binary"`` weights; lab 08 fine-tunes a
ternary model briefly in the notebook.)
For each, ``<out>/qat_<run>.pt`` holds a compact checkpoint (int8 weight codes, one scale per
output channel, float BatchNorm and biases; load it with ``qlearn.bridge.qat.load_qat_checkpoint``) and
``<out>/qat_results.json`` the accuracies on the full 10 000-image test set (float, PTQ, QAT),
the config, the seed, the torch version, the CPU time and each checkpoint's sha256. Then
``<out>/qat_mixed_precision.json``: the per-layer sensitivity table and the size/accuracy sweep of
section 6 (``--mixed-only`` runs just that stage, about 2 CPU-minutes).

Seeded: ``torch.manual_seed(seed + i)`` for run ``i`` (augmentation), the loader's own generator
for the order. Float sums inside the kernels may differ in the last bits between machines, so a
rerun gives accuracies equal to within a few hundredths of a point, not bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from qlearn.bridge.data import make_loader
from qlearn.bridge.ptq import evaluate
from qlearn.bridge.qat import QAT_RUNS, calibrate_scales, prepare_fake_quant, save_qat_checkpoint, train_qat
from qlearn.bridge.pretrained import load_pretrained

COMMAND = "nice -n 10 .venv/bin/python tools/train_qat.py --out data/checkpoints"


MIXED_CHOICES = (2, 3, 4, 6, 8)
MIXED_BUDGETS = (2.5, 3.0, 3.5, 4.0, 5.0, 6.0)  # average bits per weight


def mixed_precision_stage(base: torch.nn.Module, out: Path, reuse: bool = False, full_test: bool = True) -> dict:
    """Sensitivity table and size/accuracy sweep for lab 08 section 6 (weights only, activations float).

    Sensitivity: accuracy drop on the first 500 *training* images (no augmentation) when only one
    layer's weights are quantized (per channel, min-max). Sweep: uniform allocations and the
    knapsack (``allocate_dp``) allocations at several budgets, measured on the first 1000 *test*
    images (the lab's fixed subset is the first 500 of them); uniform 4-bit and the knapsack at the
    same size also on the full test set.
    """
    import numpy as np

    from qlearn.bridge.qat import quantize_weights_only
    from qlearn.mixed_precision import allocate_dp, allocate_greedy, total_bits

    names = [n for n, m in base.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    sizes = [int(base.get_submodule(n).weight.numel()) for n in names]
    sens_loader = make_loader("train", 500, augment=False, shuffle=False, limit=500)
    sub_loader = make_loader("test", 500, limit=1000)
    full_loader = make_loader("test", 1000) if full_test else None
    base_sens = evaluate(base, sens_loader)
    sensitivity = []
    previous = out / "qat_mixed_precision.json"
    if reuse and previous.is_file():  # --reuse-sensitivity: keep the table, redo the sweep
        sensitivity = json.loads(previous.read_text())["sensitivity"]
    for n in names[len(sensitivity):]:
        row = []
        for b in MIXED_CHOICES:
            row.append(round(base_sens - evaluate(quantize_weights_only(base, {n: b}), sens_loader), 6))
        sensitivity.append(row)
        print(f"sensitivity {n}: {row}", flush=True)
    points = []

    def measure(kind: str, bits: list[int], full: bool = False) -> None:
        model = quantize_weights_only(base, dict(zip(names, bits)))
        points.append({"kind": kind, "bits": [int(b) for b in bits], "size_bits": total_bits(sizes, bits),
                       "subset_accuracy": evaluate(model, sub_loader)})
        if full and full_test:
            points[-1]["test_accuracy"] = evaluate(model, full_loader)
        print(points[-1], flush=True)

    for b in MIXED_CHOICES:
        measure(f"uniform {b}-bit", [b] * len(names), full=b == 4)
    for avg in MIXED_BUDGETS:
        budget = int(avg * sum(sizes))
        measure(f"mixed (knapsack) {avg} bits/weight", [int(b) for b in allocate_dp(sizes, sensitivity, MIXED_CHOICES, budget)],
                full=avg == 4.0)
    measure("mixed (greedy) 4.0 bits/weight",
            [int(b) for b in allocate_greedy(sizes, sensitivity, MIXED_CHOICES, 4 * sum(sizes))])
    result = {
        "command": COMMAND + " --mixed-only", "torch_version": torch.__version__, "layers": names, "sizes": sizes,
        "choices": list(MIXED_CHOICES), "sensitivity": sensitivity, "sensitivity_images": "train[:500]",
        "base_accuracy_sensitivity_set": base_sens, "subset": "test[:1000]",
        "base_subset_accuracy": evaluate(base, sub_loader), "points": points,
        "quantization": "weights only, symmetric per output channel, min-max scale, codes [-(2**(b-1)-1), 2**(b-1)-1]",
    }
    (out / "qat_mixed_precision.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/checkpoints"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", nargs="*", default=list(QAT_RUNS), choices=list(QAT_RUNS))
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every run's steps (quick tests)")
    parser.add_argument("--mixed-only", action="store_true", help="only the mixed-precision stage")
    parser.add_argument("--no-full-test", action="store_true", help="mixed stage: only the 1000-image subset")
    parser.add_argument("--reuse-sensitivity", action="store_true",
                        help="keep the sensitivity table of an existing qat_mixed_precision.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*deprecated.*")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mixed_only:
        mixed_precision_stage(load_pretrained(), args.out, reuse=args.reuse_sensitivity,
                              full_test=not args.no_full_test)
        return
    results_path = args.out / "qat_results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    base = load_pretrained()
    test = make_loader("test", 1000)
    calib = make_loader("train", 128, augment=False, shuffle=True, seed=args.seed)
    cpu0 = time.process_time()
    results.update({
        "command": COMMAND, "seed": args.seed, "torch_version": torch.__version__, "threads": 1,
        "base_checkpoint": "resnet14_fmnist.pt", "test_images": 10000,
    })
    if "float_accuracy" not in results:
        results["float_accuracy"] = evaluate(base, test)
    print(f"float: {results['float_accuracy']:.4f}", flush=True)
    results.setdefault("runs", {})
    for i, name in enumerate(args.runs):
        cfg = QAT_RUNS[name]
        steps = max(1, int(cfg["steps"] * args.steps_scale))
        torch.manual_seed(args.seed + i)
        model = prepare_fake_quant(base, cfg["weight_bits"], cfg["act_bits"])
        calib_iter = make_loader("train", 128, augment=False, shuffle=True, seed=args.seed)
        calibrate_scales(model, calib_iter, 4)
        ptq = evaluate(model, test)
        print(f"{name}: PTQ {ptq:.4f}", flush=True)
        train = make_loader("train", cfg["batch_size"], seed=args.seed + 100 + i)
        start = time.process_time()
        info = train_qat(model, train, epochs=1, max_steps=steps, lr=cfg["lr"], desc=name)
        cpu = time.process_time() - start
        qat = evaluate(model, test)
        path = save_qat_checkpoint(model, args.out / f"qat_{name}.pt")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        results["runs"][name] = {
            "weight_bits": cfg["weight_bits"], "act_bits": cfg["act_bits"], "first_last_bits": 8,
            "steps": info["steps"], "batch_size": cfg["batch_size"],
            "images_seen": cfg["batch_size"] * info["steps"], "lr": cfg["lr"],
            "ptq_accuracy": ptq, "qat_accuracy": qat, "train_cpu_seconds": round(cpu, 1),
            "train_wall_seconds": info["seconds"], "file": path.name, "bytes": path.stat().st_size,
            "sha256": sha,
        }
        results["total_cpu_seconds"] = round(time.process_time() - cpu0, 1)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{name}: PTQ {ptq:.4f} -> QAT {qat:.4f} ({info['steps']} steps, {cpu:.0f} CPU-s); saved {path}",
              flush=True)
    print(json.dumps(results, indent=2))
    mixed_precision_stage(base, args.out)


if __name__ == "__main__":
    sys.exit(main())
