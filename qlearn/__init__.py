"""qlearn: neural-network quantization and pruning, written from scratch in numpy.

Every formula agrees bit for bit with PyTorch's kernels (the test suite compares them). The core
imports numpy only: the torch bridge (``qlearn.bridge``), the plots and widgets (``qlearn.viz``)
and the grading tools (``qlearn.grading``) are separate subpackages that depend on it.
"""

from qlearn.affine import code_dtype, dequantize, fake_quantize, quantize
from qlearn.formats import FORMATS, FloatFormat, decompose, representable_values, round_to_format
from qlearn.group import dequantize_per_group, fake_quantize_per_group, quantize_per_group
from qlearn.metrics import cosine_similarity, max_abs_error, model_size_bytes, mse, sparsity, sqnr_db
from qlearn.observers import (
    EntropyObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
)
from qlearn.packing import pack, unpack
from qlearn.pruning import apply_mask, global_magnitude_masks, ln_structured_mask, magnitude_mask, nm_mask
from qlearn.qparams import EPS, calc_qparams, qrange
from qlearn.rounding import ROUNDING_MODES, round_to_int

__version__ = "0.1.0"

__all__ = [
    "EPS",
    "FORMATS",
    "FloatFormat",
    "ROUNDING_MODES",
    "EntropyObserver",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PercentileObserver",
    "apply_mask",
    "calc_qparams",
    "code_dtype",
    "cosine_similarity",
    "decompose",
    "dequantize",
    "dequantize_per_group",
    "fake_quantize",
    "fake_quantize_per_group",
    "global_magnitude_masks",
    "ln_structured_mask",
    "magnitude_mask",
    "max_abs_error",
    "model_size_bytes",
    "mse",
    "nm_mask",
    "pack",
    "qrange",
    "quantize",
    "quantize_per_group",
    "representable_values",
    "round_to_format",
    "round_to_int",
    "sparsity",
    "sqnr_db",
    "unpack",
]
