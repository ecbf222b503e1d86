"""qlearn.bridge: the shipped checkpoint, and post-training quantization with torch.ao (eager mode)."""

import copy
import shutil
import warnings

import numpy as np
import pytest
import torch
from torch.ao import quantization as tq

import qlearn
from qlearn.bridge import (
    calibrate,
    checkpoint_path,
    evaluate,
    load_pretrained,
    make_loader,
    make_qconfig,
    model_size_bytes_on_disk,
    prepare_ptq,
    pretrained_info,
    quantize_ptq,
    quiet_quantization_warnings,
    set_engine,
    supported_engines,
)
from qlearn.bridge.pretrained import CHECKPOINTS, DEFAULT_CHECKPOINT

torch.set_num_threads(2)

# The engine these tests convert for and run on: x86 on a PC, qnnpack on Apple silicon / ARM Linux
# (tests/test_engines.py covers each engine under simulated machines).
ENGINE = supported_engines()[0]


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


@pytest.fixture(scope="module")
def test_loader():
    return make_loader("test", 1000)


@pytest.fixture(scope="module")
def calib_loader():
    return make_loader("train", 128, augment=False, shuffle=True, seed=0)


@pytest.fixture(scope="module")
def float_accuracy(model, test_loader):
    # Same weights, same function; CPU convolutions simply run faster in NHWC (channels_last).
    return evaluate(copy.deepcopy(model).to(memory_format=torch.channels_last), test_loader)


def test_checkpoint_reaches_its_recorded_accuracy(float_accuracy):
    assert float_accuracy >= 0.925
    # The accuracy stored at training time; kernels may differ in the last bits across machines.
    assert abs(float_accuracy - pretrained_info()["test_accuracy"]) <= 0.002


def test_per_channel_ptq_stays_within_0p3_points(model, test_loader, calib_loader, float_accuracy):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel = quantize_ptq(model, calib_loader, engine=ENGINE, per_channel=True, calib_batches=8)
    int8_accuracy = evaluate(qmodel, test_loader)
    assert float_accuracy - int8_accuracy <= 0.003, (float_accuracy, int8_accuracy)
    # The caller's model is untouched: same weights, still float, still unfused, no qconfig.
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(model.bn1, torch.nn.BatchNorm2d) and not hasattr(model, "qconfig")
    assert qmodel.conv1.weight().dtype == torch.qint8


def test_torch_int8_weights_equal_qlearn_codes(model, calib_loader):
    """Torch's stored int8 codes of the first conv == qlearn.quantize(fused weights), code for code."""
    set_engine(ENGINE)
    prepared = prepare_ptq(model, make_qconfig(ENGINE, per_channel=True))
    calibrate(prepared, calib_loader, 2)
    w = prepared.conv1[0].weight.detach().clone()  # BN already folded in (ConvReLU2d = [conv, relu])
    observer = make_qconfig(ENGINE, per_channel=True).weight()
    observer(w)
    scale, zero_point = observer.calculate_qparams()
    with quiet_quantization_warnings():
        qmodel = tq.convert(prepared)
    stored = qmodel.conv1.weight()
    assert stored.qscheme() == torch.per_channel_affine  # symmetric qparams, stored as affine
    torch.testing.assert_close(stored.q_per_channel_scales().float(), scale.float(), rtol=0, atol=0)

    w_np = w.numpy()
    axes = (1, 2, 3)
    # qlearn chooses the same per-channel qparams as torch's observer ...
    wmin, wmax = w_np.min(axis=axes), w_np.max(axis=axes)
    our_scale, our_zp = qlearn.calc_qparams(wmin, wmax, -128, 127, symmetric=True)
    np.testing.assert_array_equal(our_scale, scale.numpy())
    np.testing.assert_array_equal(our_zp, zero_point.numpy())
    # ... and quantizes to the same codes.
    codes = qlearn.quantize(w_np, our_scale, our_zp, -128, 127, axis=0)
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, stored.int_repr().numpy())


def test_model_size_shrinks(model, calib_loader):
    qmodel = quantize_ptq(model, calib_loader, calib_batches=1)
    ratio = model_size_bytes_on_disk(model) / model_size_bytes_on_disk(qmodel)
    assert 2.5 < ratio < 4.0  # int8 weights, but the small model's metadata does not shrink


def test_qconfig_choices():
    x86 = make_qconfig("x86", per_channel=True, observer="histogram")
    act = x86.activation()
    assert isinstance(act, tq.HistogramObserver) and (act.quant_min, act.quant_max) == (0, 127)
    assert make_qconfig("qnnpack").activation().quant_max == 255
    assert make_qconfig("x86", per_channel=False).weight().qscheme == torch.per_tensor_symmetric
    with pytest.raises(ValueError, match=r"observer must be one of \['histogram', 'minmax'\], got 'max'"):
        make_qconfig(observer="max")
    with pytest.raises(ValueError, match=r"engine must be one of .*got 'tpu'"):
        make_qconfig("tpu")


def test_set_engine():
    assert set_engine(ENGINE) == ENGINE and torch.backends.quantized.engine == ENGINE
    with pytest.raises(ValueError, match=rf"engine must be one of .*'{ENGINE}'.*got 'fast'"):
        set_engine("fast")


def test_calibrate_checks_its_arguments(model):
    with pytest.raises(ValueError, match="num_batches must be a positive int"):
        calibrate(model, [], 0)
    with pytest.raises(ValueError, match="loader yielded no batches"):
        calibrate(model, [], 3)


def test_quiet_warnings_filters_by_message_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_quantization_warnings():
            warnings.warn("torch.ao.quantization is deprecated and will be removed", DeprecationWarning)
            warnings.warn("something else is deprecated", DeprecationWarning)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_checkpoint_sha256_is_in_the_data_readme():
    readme = (checkpoint_path().parent.parent / "README.md").read_text()
    for name, (_, digest) in CHECKPOINTS.items():
        assert f"{digest}  checkpoints/{name}" in readme


def test_corrupt_checkpoint_raises_a_clear_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    src = checkpoint_path()
    dst = tmp_path / "checkpoints" / DEFAULT_CHECKPOINT
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".pt.json"), dst.with_suffix(".pt.json"))
    load_pretrained(root=tmp_path)  # the intact copy loads
    data = bytearray(dst.read_bytes())
    data[-100] ^= 1
    dst.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{DEFAULT_CHECKPOINT}.*sha256.*git checkout data/checkpoints/"):
        load_pretrained(root=tmp_path)
    dst.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{DEFAULT_CHECKPOINT}"):
        load_pretrained(root=tmp_path)


def test_per_tensor_histogram_variant(model, calib_loader):
    qmodel = quantize_ptq(model, calib_loader, per_channel=False, observer="histogram", calib_batches=1)
    assert qmodel.conv1.weight().qscheme() == torch.per_tensor_affine
    quant_max = 127 if ENGINE in ("x86", "fbgemm") else 255  # 7-bit activations on x86/fbgemm
    assert qmodel.quant.zero_point.item() in range(0, quant_max + 1)
