"""qlearn: neural-network quantization and pruning, written from scratch in numpy.

Every formula agrees bit for bit with PyTorch's kernels (the test suite compares them). The core
imports numpy only: the torch bridge (``qlearn.bridge``), the plots and widgets (``qlearn.viz``)
and the grading tools (``qlearn.grading``) are separate subpackages that depend on it.
"""

from qlearn.affine import code_dtype, dequantize, fake_quantize, quantize
from qlearn.qparams import EPS, calc_qparams, qrange
from qlearn.rounding import ROUNDING_MODES, round_to_int

__version__ = "0.1.0"

__all__ = [
    "EPS",
    "ROUNDING_MODES",
    "calc_qparams",
    "code_dtype",
    "dequantize",
    "fake_quantize",
    "qrange",
    "quantize",
    "round_to_int",
]
