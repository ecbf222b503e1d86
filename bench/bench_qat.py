"""Lab 08's targets, measured side by side in one run: PTQ against QAT, and mixed precision.

    .venv/bin/python bench/bench_qat.py            # about 1 CPU-minute (evaluations only)

It reads the full QAT runs from ``data/checkpoints/qat_results.json`` (made by
``tools/train_qat.py``), re-measures each shipped QAT checkpoint on the full test set, measures
PTQ at the same settings, and the mixed-precision allocation at the size of uniform 4-bit against
uniform 4-bit PTQ (weights only, per channel). Then one line per target, ``PASS`` or ``MISS``,
with the measured figure and the target.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import torch

from qlearn.bridge.data import make_loader
from qlearn.bridge.pretrained import load_pretrained
from qlearn.bridge.ptq import evaluate
from qlearn.bridge.qat import QAT_RUNS, calibrate_scales, load_qat_checkpoint, prepare_fake_quant, quantize_weights_only
from qlearn.datasets import data_root
from qlearn.mixed_precision import allocate_dp, total_bits


def main() -> None:
    warnings.filterwarnings("ignore", message=r".*deprecated.*")
    torch.set_num_threads(1)
    start = time.process_time()
    folder = data_root() / "checkpoints"
    results = json.loads((folder / "qat_results.json").read_text())
    table = json.loads((folder / "qat_mixed_precision.json").read_text())
    model = load_pretrained()
    test = make_loader("test", 1000)
    calib = [b for _, b in zip(range(4), make_loader("train", 128, augment=False, shuffle=True, seed=0))]
    float_acc = evaluate(model, test)
    print(f"{'setting':<12}{'PTQ':>9}{'QAT':>9}{'QAT-float':>11}   (10 000 test images; float {float_acc:.2%})")
    rows = {}
    for name, cfg in QAT_RUNS.items():
        ptq = evaluate(calibrate_scales(prepare_fake_quant(model, cfg["weight_bits"], cfg["act_bits"]), calib, 4), test)
        qat = evaluate(load_qat_checkpoint(name), test) if name in results["runs"] else float("nan")
        rows[name] = (ptq, qat)
        print(f"{name:<12}{ptq:>9.2%}{qat:>9.2%}{100 * (qat - float_acc):>+9.2f} pt")
    layers, sizes = table["layers"], np.array(table["sizes"])
    budget = 4 * int(sizes.sum())
    bits = allocate_dp(sizes, table["sensitivity"], tuple(table["choices"]), budget)
    uniform = evaluate(quantize_weights_only(model, {n: 4 for n in layers}), test)
    mixed = evaluate(quantize_weights_only(model, dict(zip(layers, bits.tolist()))), test)
    print(f"weights only: uniform 4-bit {uniform:.2%}, mixed at the same size ({total_bits(sizes, bits)} <= {budget} "
          f"bits) {mixed:.2%}; bits {bits.tolist()}")
    print(f"(CPU time {time.process_time() - start:.0f} s)")
    gap4 = float_acc - rows["w4a4"][1]
    gap2 = float_acc - rows["w2a8"][1]
    print(f"{'PASS' if gap4 <= 0.010 else 'MISS'} W4A4 QAT within 1.0 point of float: {100 * gap4:.2f} points below")
    print(f"{'PASS' if gap2 <= 0.030 else 'MISS'} W2A8 QAT within 3 points of float: {100 * gap2:.2f} points below")
    gain = mixed - uniform
    print(f"{'PASS' if gain >= 0.02 else 'MISS'} mixed precision at uniform 4-bit size beats uniform 4-bit PTQ "
          f"by >= 2 points: {100 * gain:+.2f} points")


if __name__ == "__main__":
    main()
