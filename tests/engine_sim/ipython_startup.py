# IPython startup file written by tests/engine_sim/run.py into a temporary IPYTHONDIR.
# Every kernel started with that IPYTHONDIR (nbclient, nbval, jupyter lab) runs this first: when
# QLEARN_SIMULATE_ENGINES is set, the kernel's torch then has only those quantized engines.
import os as _os

if _os.environ.get("QLEARN_SIMULATE_ENGINES", "").strip():
    import importlib.util as _util

    _spec = _util.spec_from_file_location("qlearn_engine_sim", "@SIMULATE_PY@")
    _module = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.activate_from_env()
    del _util, _spec, _module
del _os
