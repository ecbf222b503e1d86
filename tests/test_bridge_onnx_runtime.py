"""qlearn.bridge.onnx_runtime: export, QDQ static quantization with a calibration reader, evaluation.

Oracle: the exported float graph computes what torch computes; the QDQ graph's input scale is what
onnxruntime's own ``compute_scale_zp`` gives on the reader's feeds. Skipped without onnxruntime.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx is not installed (lab 12's dependency, see requirements.txt)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (lab 12's dependency, see requirements.txt)")

from qlearn.bridge.onnx_runtime import (INPUT_NAME, ImageCalibrationReader, count_ops, evaluate_onnx, export_onnx,
                                        file_size, measure_onnx_latency, ort_session, qdq_initializer_dtypes,
                                        quantize_qdq)
from qlearn.bridge.resnet import resnet_fmnist


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = resnet_fmnist(8).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("onnx")
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.rand(4, 1, 28, 28, generator=gen), torch.zeros(4, dtype=torch.long)) for _ in range(3)]
    float_path = export_onnx(model, folder / "m.onnx")
    reader = ImageCalibrationReader(batches, num_batches=2)
    int8_path = quantize_qdq(float_path, folder / "q.onnx", reader)
    return model, batches, reader, float_path, int8_path


def test_exported_graph_computes_what_torch_computes(exported):
    model, batches, _, float_path, _ = exported
    x = batches[0][0]
    got = ort_session(float_path).run(None, {INPUT_NAME: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # float32 kernels, different summation order


def test_export_leaves_the_model_in_its_mode(tmp_path):
    model = resnet_fmnist(8).train()
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training


def test_op_counts_are_exact(exported):
    _, _, _, float_path, int8_path = exported
    float_ops, int8_ops = count_ops(float_path), count_ops(int8_path)
    assert float_ops == {"Conv": 9, "Relu": 7, "Add": 3, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
    layers = float_ops["Conv"] + float_ops["Gemm"]
    assert int8_ops["DequantizeLinear"] == int8_ops["QuantizeLinear"] + 2 * layers
    assert "Relu" not in int8_ops
    assert qdq_initializer_dtypes(int8_path)["int8"] == 2 * layers


def test_reader_stops_after_num_batches_and_rewinds():
    batches = [torch.full((2, 1, 28, 28), float(k)) for k in range(5)]
    reader = ImageCalibrationReader(batches, num_batches=3)
    seen = [feed[INPUT_NAME][0, 0, 0, 0] for feed in iter(reader.get_next, None)]
    assert seen == [0.0, 1.0, 2.0] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next()[INPUT_NAME].dtype == np.float32


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_reader_rejects_bad_num_batches(bad):
    with pytest.raises(ValueError, match="num_batches"):
        ImageCalibrationReader([torch.zeros(1, 1, 28, 28)], num_batches=bad)


def test_reader_without_batches_is_an_error():
    with pytest.raises(ValueError, match="no batches"):
        ImageCalibrationReader([], num_batches=2)


def test_input_scale_is_onnxruntime_minmax_of_the_feeds(exported):
    from onnx import numpy_helper
    import onnx
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    _, _, reader, _, int8_path = exported
    graph = onnx.load(str(int8_path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    node = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == INPUT_NAME)
    values = np.concatenate([f[INPUT_NAME].ravel() for f in reader.feeds])
    zp, scale = compute_scale_zp(values.min(), values.max(), np.array(0, np.uint8), np.array(255, np.uint8))
    assert inits[node.input[1]] == scale and inits[node.input[2]] == zp

    from qlearn.grading.labs.lab12 import minmax_qparams
    assert minmax_qparams(reader.feeds + [None], INPUT_NAME, 0, 255) == (float(scale), int(zp))


def test_int8_model_is_close_to_float_and_smaller(exported):
    _, batches, _, float_path, int8_path = exported
    x = batches[2][0].numpy()
    f = ort_session(float_path).run(None, {INPUT_NAME: x})[0]
    q = ort_session(int8_path).run(None, {INPUT_NAME: x})[0]
    # an untrained net's logits: int8 error stays a small fraction of their spread
    assert np.abs(q - f).max() <= 0.25 * (f.max() - f.min())
    assert file_size(int8_path) < 0.5 * file_size(float_path)


def test_evaluate_and_latency(exported):
    _, batches, _, float_path, _ = exported
    session = ort_session(float_path)
    acc = evaluate_onnx(session, batches)
    assert 0.0 <= acc <= 1.0
    assert measure_onnx_latency(session, batches[0][0], repeats=2, warmup=0) > 0
    with pytest.raises(ValueError, match="no samples"):
        evaluate_onnx(session, [])
    with pytest.raises(ValueError, match="threads"):
        ort_session(float_path, threads=0)
