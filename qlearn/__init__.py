"""qlearn: neural-network quantization and pruning, written from scratch in numpy.

Every formula is checked against PyTorch's kernels by the test suite, and agrees bit for bit where
PyTorch computes the same thing: quantize, dequantize and fake_quantize (per tensor and per
channel), ``calc_qparams`` and the min-max observers, the float-format casts, the integer matmul and
the pruning masks (on data without ties in magnitude: ``torch.topk`` leaves the order of ties
unspecified, so there only the count of pruned entries agrees). Two places differ by design, by at
most one code, and their modules say exactly where: ``qlearn.group`` against
``quantize_per_channel_group`` when the zero-point is not 0 (torch adds it before rounding), and
``qlearn.intops``' fixed-point requantization against the float32 requantization of the fbgemm and
qnnpack kernels, near ties. The observers that torch lacks (percentile, MSE, entropy) follow their
papers. The core imports numpy only: the torch bridge (``qlearn.bridge``), the plots and widgets (``qlearn.viz``)
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
from qlearn.sparse_storage import (
    bitmap_bytes,
    break_even_sparsity,
    csr_bytes,
    dense_bytes,
    index_bytes,
    nm_bytes,
    storage_bytes,
)

__version__ = "0.1.0"

__all__ = [
    "EPS",
    "FORMATS",
    "ROUNDING_MODES",
    "EntropyObserver",
    "FloatFormat",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PercentileObserver",
    "apply_mask",
    "bitmap_bytes",
    "break_even_sparsity",
    "calc_qparams",
    "code_dtype",
    "cosine_similarity",
    "csr_bytes",
    "decompose",
    "dense_bytes",
    "dequantize",
    "dequantize_per_group",
    "fake_quantize",
    "fake_quantize_per_group",
    "global_magnitude_masks",
    "index_bytes",
    "ln_structured_mask",
    "magnitude_mask",
    "max_abs_error",
    "model_size_bytes",
    "mse",
    "nm_bytes",
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
    "storage_bytes",
    "unpack",
]
