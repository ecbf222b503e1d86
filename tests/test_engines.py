"""qlearn.bridge on every kind of machine: qnnpack only (Apple silicon, ARM Linux), x86 without
qnnpack (Windows), and this machine's full set. The machines are simulated with tests/engine_sim
(``torch.backends.quantized.supported_engines`` patched, unsupported engines refused as torch does)."""

import contextlib
import io
import re
import warnings

import pytest
import torch
from engine_sim import simulate_engines, simulated
from torch import nn

from qlearn.bridge import (
    ENGINE_PREFERENCE,
    best_engine,
    calibrate,
    evaluate,
    load_pretrained,
    make_loader,
    make_qconfig,
    measure_latency,
    prepare_ptq,
    quantize_ptq,
    select_engine,
    set_engine,
    supported_engines,
)

warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")

# (engines the simulated torch has, what supported_engines() returns, the best one, torch's default)
MACHINES = {
    "apple silicon / ARM Linux": (("qnnpack",), ["qnnpack"], "qnnpack", "none"),
    "windows (no qnnpack)": (("onednn", "x86", "fbgemm"), ["x86", "fbgemm", "onednn"], "x86", "x86"),
    "fbgemm only": (("fbgemm",), ["fbgemm"], "fbgemm", "none"),
}
REAL = [e for e in ENGINE_PREFERENCE if e in torch.backends.quantized.supported_engines]


@pytest.fixture(params=list(MACHINES), ids=list(MACHINES))
def machine(request):
    engines, supported, best, default = MACHINES[request.param]
    if simulated() is not None:
        pytest.skip("a whole-session simulation is active; simulations do not nest")
    if not set(engines) <= set(REAL):
        pytest.skip(f"this torch lacks {sorted(set(engines) - set(REAL))}: cannot simulate {request.param}")
    engine, threads = torch.backends.quantized.engine, torch.get_num_threads()
    torch.set_num_threads(1)
    with simulate_engines(engines):
        yield supported, best, default
    torch.set_num_threads(threads)
    assert torch.backends.quantized.engine == engine  # the simulation gave the real engine back


@pytest.fixture(scope="module")
def small():
    """The shipped trained ResNet and three batches of 16 training images (qnnpack refuses the
    residual adds of a random network: their scale ratios fall outside [2**-14, 2**8))."""
    model = load_pretrained()
    batches = [b for _, b in zip(range(3), make_loader("train", 16, augment=False, shuffle=True, seed=0))]
    return model, batches


def test_the_simulation_behaves_like_the_real_machine(machine):
    supported, best, default = machine
    assert torch.backends.quantized.supported_engines == supported_order(supported) + ["none"]
    assert torch.backends.quantized.engine == default  # as torch starts on that machine
    missing = [e for e in ("x86", "fbgemm", "qnnpack", "onednn") if e not in supported]
    for engine in missing:
        with pytest.raises(RuntimeError, match=rf"quantized engine {engine.upper()} is not supported"):
            torch.backends.quantized.engine = engine
    with pytest.raises(RuntimeError, match="tpu is not a valid value"):
        torch.backends.quantized.engine = "tpu"


def supported_order(supported):
    # torch lists its engines in its own order; the simulation keeps it
    return [e for e in torch.backends.quantized.supported_engines if e in supported]


def test_best_engine_and_select_engine_pick_what_the_machine_has(machine):
    supported, best, _ = machine
    assert supported_engines() == supported
    assert best_engine() == best
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert select_engine() == best
    assert out.getvalue() == f"Quantized engine: {best} (this machine has: {', '.join(supported)})\n"
    assert torch.backends.quantized.engine == best


def test_an_engine_the_machine_lacks_is_a_clear_value_error(machine, small):
    supported, best, _ = machine
    model, batches = small
    for engine in (e for e in ENGINE_PREFERENCE if e not in supported):
        message = (re.escape(f"engine must be one of {supported} (the engines this build of torch has), "
                             f"got {engine!r}: it exists ") + r".*" + re.escape(f"best_engine() (here {best!r})"))
        with pytest.raises(ValueError, match=message):
            set_engine(engine)
        with pytest.raises(ValueError, match=rf"got '{engine}'"):
            quantize_ptq(model, batches, engine=engine, calib_batches=1)
    with pytest.raises(ValueError, match=r"got 'tpu'; best_engine\(\)"):
        set_engine("tpu")


def test_make_qconfig_follows_the_engine(machine):
    supported, best, _ = machine
    # a qconfig is only numbers: any engine torch knows, on any machine
    assert make_qconfig("x86").activation().quant_max == 127
    assert make_qconfig("qnnpack").activation().quant_max == 255
    set_engine(best)
    assert make_qconfig().activation().quant_max == (127 if best in ("x86", "fbgemm") else 255)
    with pytest.raises(ValueError, match=r"engine must be one of .*got 'tpu'"):
        make_qconfig("tpu")


@pytest.mark.parametrize("per_channel", [True, False])
def test_quantize_ptq_converts_and_runs_on_every_engine_of_the_machine(machine, small, per_channel):
    supported, best, default = machine
    model, batches = small
    x = batches[0][0]
    with torch.no_grad():
        reference = model(x)
    # engine=None on a machine that starts with no engine set ('none', as on a Mac): the best one
    assert torch.backends.quantized.engine == default
    qmodel = quantize_ptq(model, batches, per_channel=per_channel, calib_batches=2)
    assert torch.backends.quantized.engine == best
    for engine in supported:
        qmodel = quantize_ptq(model, batches, engine=engine, per_channel=per_channel, calib_batches=2)
        assert torch.backends.quantized.engine == engine
        assert qmodel.conv1.weight().dtype == torch.qint8
        quant_max = 127 if engine in ("x86", "fbgemm") else 255
        assert 0 <= qmodel.quant.zero_point.item() <= quant_max
        with torch.no_grad():
            out = qmodel(x)
        # the int8 model predicts what the float model predicts on nearly every image (PTQ of this
        # network costs < 0.3 points of accuracy; 14 of 16 leaves room for a borderline image or two,
        # and a model run on the wrong kernels or with wrong scales gets about 1 in 10)
        assert int((out.argmax(1) == reference.argmax(1)).sum()) >= 14
        assert 0.0 <= evaluate(qmodel, batches) <= 1.0
        assert measure_latency(qmodel, x[:1], repeats=1, warmup=0) > 0


def test_the_step_by_step_recipe_works_on_the_machine(machine, small):
    supported, best, _ = machine
    model, batches = small
    engine = select_engine(verbose=False)
    prepared = calibrate(prepare_ptq(model), batches, 1)  # qconfig for the engine set
    observers = [m for m in prepared.modules() if isinstance(m, torch.ao.quantization.ObserverBase)]
    assert observers and all(o.quant_max == (127 if engine in ("x86", "fbgemm") else 255)
                             for o in observers if o.dtype == torch.quint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmodel = torch.ao.quantization.convert(prepared)
    with torch.no_grad():
        assert qmodel(batches[0][0]).shape == (16, 10)


def test_nothing_leaks_out_of_a_simulation():
    if simulated() is not None:
        pytest.skip("a whole-session simulation is active; simulations do not nest")
    engine = torch.backends.quantized.engine
    with simulate_engines("qnnpack"):
        assert supported_engines() == ["qnnpack"]
    assert torch.backends.quantized.engine == engine
    assert torch.backends.quantized.supported_engines == [
        torch.backends.quantized._get_qengine_str(e) for e in torch._C._supported_qengines()]
    with pytest.raises(ValueError, match=r"QLEARN_SIMULATE_ENGINES must name engines this torch really has"):
        with simulate_engines("tpu"):
            pass


def test_the_session_simulation_if_any_is_what_the_bridge_sees():
    engines = simulated()
    if engines is None:
        assert supported_engines() == REAL
    else:
        assert set(supported_engines()) == set(engines) and best_engine() in engines
