"""Deployment runtimes, measured in one run: the ResNet in torch (eager int8), ONNX Runtime (QDQ int8)
and torchao (PT2E, X86 quantizer), side by side; lab 12's comparison on the full test set.

    python bench/bench_deploy.py [--threads 2] [--no-torchao]

Every int8 model is calibrated on the same 8 batches of 128 training images (seed 0) and evaluated
on all 10,000 test images. Latency: median of 20 runs on one batch of 64 images.

Target (printed as PASS/MISS, never asserted): ONNX Runtime's int8 ResNet within 0.3 points of
torch's int8 accuracy, with its latency ratio printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from qlearn.bridge import ptq
from qlearn.bridge.data import make_loader
from qlearn.bridge.onnx_runtime import (ImageCalibrationReader, evaluate_onnx, export_onnx, file_size,
                                        measure_onnx_latency, ort_session, quantize_qdq)
from qlearn.bridge.pretrained import load_pretrained
from qlearn.bridge.torchao_flow import pt2e_supported, quantize_pt2e_x86


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-torchao", action="store_true", help="skip the PT2E row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_deploy_"))
    model = load_pretrained()
    calib = [b for _, b in zip(range(8), make_loader("train", 128, augment=False, shuffle=True, seed=0))]
    test = make_loader("test", 1000)
    x64 = next(iter(make_loader("test", 64)))[0]
    rows = {}

    def row(name, fn_acc, size, fn_lat):
        start = time.perf_counter()
        rows[name] = (fn_acc(), size, fn_lat())
        print(f"  measured {name} in {time.perf_counter() - start:.0f} s", flush=True)

    engine = ptq.select_engine()
    row("torch float32", lambda: ptq.evaluate(model, test), ptq.model_size_bytes_on_disk(model),
        lambda: ptq.measure_latency(model, x64))
    with ptq.quiet_quantization_warnings():
        torch_int8 = ptq.quantize_ptq(model, calib, calib_batches=8)
    row(f"torch int8 eager ({engine})", lambda: ptq.evaluate(torch_int8, test),
        ptq.model_size_bytes_on_disk(torch_int8), lambda: ptq.measure_latency(torch_int8, x64))

    float_path = export_onnx(model, work / "resnet.onnx")
    int8_path = quantize_qdq(float_path, work / "resnet_int8.onnx", ImageCalibrationReader(calib, 8))
    s_float, s_int8 = ort_session(float_path, args.threads), ort_session(int8_path, args.threads)
    row("ONNX Runtime float32", lambda: evaluate_onnx(s_float, test), file_size(float_path),
        lambda: measure_onnx_latency(s_float, x64))
    row("ONNX Runtime int8 QDQ", lambda: evaluate_onnx(s_int8, test), file_size(int8_path),
        lambda: measure_onnx_latency(s_int8, x64))

    ok, why = pt2e_supported()
    if args.no_torchao:
        print("torchao PT2E: skipped (--no-torchao)")
    elif not ok:
        print(f"torchao PT2E: skipped: {why}")
    else:
        pt2e = quantize_pt2e_x86(model, calib)
        # the converted reference model runs quantize/dequantize ops around float ops (no torch.compile
        # here: compiling needs a C++ toolchain and minutes): its accuracy is int8's, its latency is not
        row("torchao PT2E int8 (reference)", lambda: _evaluate_graph(pt2e, test), None,
            lambda: _latency_graph(pt2e, x64))

    print(f"\n{'model':32s} {'accuracy':>9s} {'size':>10s} {'latency (64 images)':>20s}")
    for name, (acc, size, seconds) in rows.items():
        size_text = f"{size / 1e3:8.0f} kB" if size is not None else f"{'-':>11s}"
        print(f"{name:32s} {acc:9.2%} {size_text} {seconds * 1e3:17.1f} ms")
    torch_acc, torch_lat = rows[f"torch int8 eager ({engine})"][0], rows[f"torch int8 eager ({engine})"][2]
    ort_acc, ort_lat = rows["ONNX Runtime int8 QDQ"][0], rows["ONNX Runtime int8 QDQ"][2]
    gap = 100 * (ort_acc - torch_acc)
    print(f"\n{verdict(abs(gap) <= 0.3)} ONNX Runtime int8 vs torch int8 accuracy: {gap:+.2f} points "
          f"(target: within 0.3); latency ratio ORT int8 / torch int8 = {ort_lat / torch_lat:.2f}")


@torch.no_grad()
def _evaluate_graph(graph_module, loader) -> float:
    correct = total = 0
    for xb, yb in loader:
        correct += int((graph_module(xb).argmax(1) == yb).sum())
        total += len(yb)
    return correct / total


@torch.inference_mode()
def _latency_graph(graph_module, x, repeats: int = 20, warmup: int = 3) -> float:
    import statistics

    for _ in range(warmup):
        graph_module(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        graph_module(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
