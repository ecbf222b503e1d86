"""qlearn.viz.pruning: the granularity masks, the output error, the plots and the explorer of lab 06."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from qlearn.pruning import ln_structured_mask, magnitude_mask, nm_mask
from qlearn.viz.pruning import (
    GRANULARITIES,
    PruningExplorer,
    granularity_mask,
    output_sqnr,
    plot_layer_sparsity,
    plot_sqnr_vs_sparsity,
    plot_storage,
    plot_weight_histograms,
    pruning_explorer,
)


@pytest.fixture
def layer(rng):
    return rng.standard_normal((8, 4, 3, 3)).astype(np.float32)


def test_granularity_masks_are_the_library_masks(layer):
    assert np.array_equal(granularity_mask(layer, 0.5, "fine-grained"), magnitude_mask(layer, 0.5))
    assert np.array_equal(granularity_mask(layer, 0.25, "channel"), ln_structured_mask(layer, 0.25, n=2, dim=0))
    assert np.array_equal(granularity_mask(layer, 0.9, "2:4").reshape(8, -1), nm_mask(layer.reshape(8, -1), 2, 4))
    kernels = granularity_mask(layer, 0.5, "kernel").reshape(32, 9)
    assert (kernels.all(axis=1) | ~kernels.any(axis=1)).all()  # whole 3x3 kernels
    assert (~kernels.any(axis=1)).sum() == 16
    with pytest.raises(ValueError, match="granularity"):
        granularity_mask(layer, 0.5, "blocks")
    with pytest.raises(ValueError, match="multiple of 4"):
        granularity_mask(np.ones((2, 1, 3, 3)), 0.5, "2:4")


@given(amount=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]), granularity=st.sampled_from(GRANULARITIES[:3]))
def test_granularity_masks_prune_whole_units_in_the_exact_count(amount, granularity):
    w = np.random.default_rng(1).standard_normal((8, 4, 3, 3))
    mask = granularity_mask(w, amount, granularity)
    shapes = {"fine-grained": (-1, 1), "kernel": (32, 9), "channel": (8, 36)}
    units = mask.reshape(shapes[granularity])
    assert (units.all(axis=1) | ~units.any(axis=1)).all()
    assert (~units.any(axis=1)).sum() == round(amount * len(units))


def test_output_sqnr_uses_the_conv_output_as_torch_computes_it(rng, layer):
    from qlearn.intops import im2col

    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    mask = magnitude_mask(layer, 0.5)
    patches = im2col(x, 3, 1, 1).transpose(0, 2, 1).reshape(-1, 36)
    dense = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(layer), padding=1).double()
    pruned = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(layer * mask), padding=1).double()
    expected = 10 * np.log10(float((dense**2).sum() / ((dense - pruned) ** 2).sum()))
    assert abs(output_sqnr(patches, layer, mask) - expected) < 1e-4  # float32 conv against float64 products
    assert output_sqnr(patches, layer, np.ones(layer.shape, bool)) == np.inf


def test_plots_draw_what_they_say(layer):
    fig = plot_weight_histograms({"a": layer, "b": 0.1 * layer})
    assert [t.get_text().split(" ")[0] for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    fig2 = plot_sqnr_vs_sparsity([0.1, 0.5], {"magnitude": [20.0, 10.0], "2:4": [8.0]})
    assert len(fig2.axes[0].lines) == 2
    fig3 = plot_layer_sparsity(["x", "y"], [0.5, 0.5], [0.2, 0.8])
    assert [round(p.get_height(), 2) for p in fig3.axes[0].patches] == [0.5, 0.5, 0.2, 0.8]
    fig4 = plot_storage((64, 576), bits=(32, 8))
    assert len(fig4.axes) == 2 and "8-bit" in fig4.axes[1].get_title()
    plt.close("all")


def test_explorer_remembers_each_layers_granularity(rng):
    weights = {"a": rng.standard_normal((8, 16)).astype(np.float32),
               "b": rng.standard_normal((4, 8)).astype(np.float32)}
    patches = {"a": rng.standard_normal((32, 16)), "b": rng.standard_normal((32, 8))}
    ex = pruning_explorer(weights, patches, layer="a", sparsity=0.5)
    assert isinstance(ex, PruningExplorer) and ex.image.value[:4] == b"\x89PNG"
    ex.update(granularity="channel")
    assert (~ex.mask.any(axis=1)).sum() == 4
    ex.update(layer="b")
    assert ex.controls["granularity"].value == "fine-grained"
    ex.update(granularity="2:4")
    assert ex.controls["sparsity"].disabled and ex.mask.sum() == 16
    ex.update(layer="a")
    assert ex.controls["granularity"].value == "channel" and ex.choices == {"a": "channel", "b": "2:4"}
    ex.controls["layer"].value = "b"  # as a click in the browser does
    assert ex.controls["granularity"].value == "2:4"
    assert "output SQNR" in ex.readout.value
    assert ex._repr_mimebundle_()["text/plain"] == "PruningExplorer(layer='b', sparsity=0.5, granularity='2:4')"
    with pytest.raises(ValueError, match="recorded inputs"):
        PruningExplorer(weights, {"a": patches["a"]})
