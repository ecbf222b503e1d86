"""The grader's child: run one exercise's function on its case inputs, send back plain data only.

The grader (``qlearn.grading.grade``) starts this as ``python -I -c SOURCE`` where SOURCE is the
text of ``_plain.py`` and ``_disarm.py`` followed by this file, so the child never imports
``qlearn.grading``: the
references, the checks and the expected values do not exist in it. It reads one JSON job from
stdin::

    {"exercise": "02.1", "function": "quantize_tensor", "statements": [[where, source], ...],
     "forbidden": ["qlearn.affine.quantize", ...], "cases": [encoded args, ...],
     "kwargs": [encoded kwargs, ...], "result": "value" | "calibrate", "tensors": bool,
     "limits": {"memory": bytes, "cpu": seconds, "nproc": n}, "protected": [dir, ...]}

and, before running any learner code, it

1. sets its resource limits (address space, CPU time, processes, no core files, file size);
2. keeps the result pipe on a private file descriptor and points fd 1 and 2 at ``/dev/null`` (what
   the learner's code prints goes nowhere);
3. imports numpy and every ``qlearn`` core module, then makes each forbidden callable raise
   ``DelegationError`` for every alias (a Python function gets a new ``__code__``; a C function is
   replaced wherever a module or class holds it);
4. puts a stub ``qlearn.grading`` (and every submodule) in ``sys.modules``: each name in it raises
   ``DelegationError`` when called;
5. adds an audit hook (``sys.addaudithook``, which cannot be removed) that refuses: opening files
   of the ``qlearn`` package (so no fresh copy of a disarmed or grading module can be loaded),
   importing ``qlearn`` modules not loaded in step 3, reading other processes' ``/proc`` entries,
   starting processes, sockets, and opening
   files for writing outside the working folder (and the job's ``writable`` folders).

Then it runs the notebook's extracted statements (one by one: a failing statement is noted, the
rest still run), looks up the function, calls it on each case (a fresh decode per call: torch
tensors are built anew from their bytes, and torch is imported only when ``"tensors"`` says the
cases carry some), and
writes one JSON line per case: ``{"case": i, "status": "ok", "value": encoded}`` or a status of
``"not done"``, ``"delegated"``, ``"error"`` (with the error text), or ``"missing"`` when the
function is not defined. ``result="calibrate"`` (exercise 10.2) sends a summary of the model
instead of the model: whether the same object came back, its mode, and its observers' logs.
The parent validates every line; nothing here decides a score.
"""

import builtins
import json
import os
import sys

if "encode" not in globals():  # imported as a module (docs, doctests): the codec from the package
    from qlearn.grading._plain import decode, encode  # noqa: F401
if "raiser_code" not in globals():  # the same for the disarming mechanics shared with delegation.py
    from qlearn.grading._disarm import raiser_code, replace_everywhere  # noqa: F401

__all__: list = []


class DelegationError(RuntimeError):
    """A forbidden callable was called (the library's implementation, or the grading package)."""


def _limits(limits):
    import resource

    memory = int(limits.get("memory") or 0)
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(limits.get("cpu") or 0)
    if cpu > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    nproc = int(limits.get("nproc") or 0)
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    size = 256 * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def _raiser(message):
    def disarmed(*args, **kwargs):
        raise DelegationError(message)
    return disarmed


def _code_raiser(function, message):
    # the new code runs with the original function's globals: the error class comes from builtins
    builtins.__qlearn_delegation_error__ = DelegationError
    return raiser_code(function, message, "__qlearn_delegation_error__")


def _resolve(name):
    """The object a dotted name points to, or None. An attribute wins over a submodule of the same
    name: ``torch.ao.quantization.fuse_modules`` is the function, not the module that defines it."""
    import importlib

    parts = name.split(".")
    try:
        obj = importlib.import_module(parts[0])
    except ImportError:
        return None
    for index in range(1, len(parts)):
        value = getattr(obj, parts[index], None)
        if value is None:
            try:
                value = importlib.import_module(".".join(parts[: index + 1]))
            except ImportError:
                return None
        obj = value
    return obj


def _unwrapped(item):
    """``item`` and every function it wraps (``functools.wraps`` keeps the original as ``__wrapped__``:
    ``@torch.no_grad()`` on ``qlearn.bridge.ptq.calibrate``), so that no layer stays callable."""
    seen = []
    while item is not None and all(item is not other for other in seen):
        seen.append(item)
        try:
            item = object.__getattribute__(item, "__wrapped__")
        except AttributeError:
            break
    return seen


def _disarm(names, exercise_id):
    import types

    functions, c_functions = [], {}
    # a package that is not loaded (torch, when the notebook does not import it) is not imported
    # here: importing it later is refused instead (see _guard)
    names = [name for name in names if name.split(".")[0] in sys.modules]
    for name in names:
        obj = _resolve(name)
        if obj is None:
            continue
        message = f"{name} is the library's implementation of exercise {exercise_id}; write it yourself"
        items = [obj]
        if isinstance(obj, type):
            items = [getattr(v, "__func__", v) for v in vars(obj).values()]
        for item in [layer for item in items for layer in _unwrapped(item)]:
            if isinstance(item, types.FunctionType):
                functions.append((item, message))
            elif isinstance(item, (types.BuiltinFunctionType, types.MethodDescriptorType,
                                   types.WrapperDescriptorType)) or callable(item):
                c_functions[id(item)] = (item, _raiser(message))
    for function, message in functions:
        function.__code__ = _code_raiser(function, message)
    for name in names:  # a method of a C type (torch.Tensor.clamp): replace it on the Python class
        parent_name, _, attr = name.rpartition(".")
        parent = _resolve(parent_name) if parent_name else None
        hit = c_functions.get(id(getattr(parent, attr, None)))
        if isinstance(parent, type) and hit is not None:
            try:
                setattr(parent, attr, hit[1])
            except (AttributeError, TypeError):
                pass
    replace_everywhere(c_functions)  # every module, the owning class and its subclasses


class _Stub:
    """A stand-in for ``qlearn.grading`` and its submodules: every attribute raises when called."""

    def __init__(self, name):
        self.__name__ = name
        self.__path__ = []
        self.__spec__ = None

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Forbidden(f"{self.__name__}.{attr}")


class _Forbidden:
    """A name from the grading package: calling, indexing or using it in any way raises."""

    def __init__(self, name):
        object.__setattr__(self, "_message", f"{name} is part of the grading package (qlearn.grading); "
                                             f"a solution may not use it: write it yourself")

    def _raise(self, *args, **kwargs):
        raise DelegationError(object.__getattribute__(self, "_message"))

    __call__ = __getitem__ = __iter__ = __len__ = __contains__ = __setattr__ = _raise

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        self._raise()


class _StubFinder:
    """Imports of ``qlearn.grading...`` give stubs (a notebook's ``from qlearn.grading import check``)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "qlearn.grading" or name.startswith("qlearn.grading."):
            import importlib.machinery

            return importlib.machinery.ModuleSpec(name, _StubFinder, is_package=True)
        return None

    @staticmethod
    def create_module(spec):
        return _Stub(spec.name)

    @staticmethod
    def exec_module(module):
        return None


def _guard(protected, writable, allowed_imports, checkout=None, refused=()):
    """The audit hook: see the module doc, step 5. ``checkout`` (``{"root", "readable"}``): a source
    checkout holds the solutions; nothing in it may be read but the running Python's folders."""
    protected = tuple(os.path.join(os.path.realpath(p), "") for p in protected)
    checkout = checkout or {}
    secret_root = os.path.join(os.path.realpath(checkout["root"]), "") if checkout.get("root") else None
    readable = tuple(os.path.join(os.path.realpath(p), "") for p in checkout.get("readable", ()))
    workdir = tuple(os.path.join(os.path.realpath(p), "") for p in writable)
    deny = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
            "os.forkpty", "pty.spawn", "socket.connect", "socket.bind", "socket.sendto",
            "sys.setprofile", "sys.settrace", "os.kill", "os.killpg", "os.link", "os.symlink"}
    realpath, startswith, fspath = os.path.realpath, str.startswith, os.fspath
    # the folders whose files and subfolders the learner's code may open: the writable ones, but never
    # one that holds the checkout (a clone under /tmp, where bwrap's private /tmp is writable)
    own = tuple(p for p in workdir if not (secret_root and startswith(secret_root, p)))
    own_proc = f"/proc/{os.getpid()}/"

    def hook(event, args):
        if event in deny:
            raise PermissionError(f"the grader does not allow {event} in a graded function")
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = realpath(fspath(args[0]) if not isinstance(args[0], bytes) else args[0].decode())
            if startswith(path, protected):
                raise PermissionError("the grader does not allow reading the qlearn package's files")
            if secret_root and startswith(path, secret_root) and not startswith(path, readable) \
                    and not startswith(path, own):
                raise PermissionError("the grader does not allow reading the course's files")
            if not startswith(path, own) and os.path.isdir(path):
                # a folder's descriptor would open files relative to it (dir_fd), past these checks
                raise PermissionError("the grader does not allow opening folders outside the submission's folder")
            if startswith(path, "/proc/") and not startswith(path, (own_proc, "/proc/self")) and \
                    path[6:7].isdigit():
                raise PermissionError("the grader does not allow reading other processes")
            mode = args[1] if len(args) > 1 else "r"
            flags = args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and not startswith(path, workdir) and not startswith(path, "/dev/null"):
                raise PermissionError("the grader does not allow writing outside the submission's folder")
        elif event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.chmod",
                       "os.truncate", "os.utime", "os.chown"):
            path = args[0] if args else None
            if isinstance(path, (str, os.PathLike)) and not startswith(realpath(fspath(path)), workdir):
                raise PermissionError("the grader does not allow changing files outside the submission's folder")
        elif event == "import" and args and isinstance(args[0], str):
            name = args[0]
            if name.split(".")[0] in refused:
                raise ImportError(f"{name.split('.')[0]} is not available while this exercise is graded: it asks "
                                  f"for numpy (and the helpers its feedback names), not for {name.split('.')[0]}")
            if (name == "qlearn" or name.startswith("qlearn.")) and not name.startswith("qlearn.grading"):
                raise ImportError(f"the grader loaded qlearn before your code ran; {name} cannot be re-imported")
            if name.split(".")[0] in allowed_imports[1] and name.split(".")[0] not in allowed_imports[0]:
                raise ImportError(f"import {name.split('.')[0]} at the top of your notebook, not inside a function")

    sys.addaudithook(hook)


def _summary_calibrate(got, model):
    """What exercise 10.2's check looks at, as plain data: see ``grade._calibrate_from_summary``."""
    if got is None:
        returned = "none"
    elif got is model:
        returned = "same"
    elif type(got) is type(model):
        returned = "copy"
    else:
        return {"returned": encode(got) if isinstance(got, (int, float, str)) else {"x": type(got).__name__}}
    return {"returned": returned, "training": bool(model.training),
            "logs": {k: [list(e) for e in o.log] for k, o in model.observers.items()}}


def _lab10_objects():
    """The child's own copies of lab 10's stand-in model and loader (same behaviour, built here)."""
    import math

    import numpy as np

    class RecordingObserver:
        def __init__(self):
            self.min_val, self.max_val, self.log = math.inf, -math.inf, []

        def observe(self, x, training):
            import torch

            self.log.append((bool(training), torch.is_grad_enabled(), int(x.shape[0]), round(float(x.sum()), 4)))
            self.min_val = min(self.min_val, float(x.min()))
            self.max_val = max(self.max_val, float(x.max()))

    class TinyObservedModel:
        def __init__(self, weight, bias):
            self.weight, self.bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
            self.training = True
            self.observers = {"input": RecordingObserver(), "output": RecordingObserver()}

        def forward(self, x):
            import torch

            self.observers["input"].observe(x, self.training)
            y = x @ torch.from_numpy(self.weight).T + torch.from_numpy(self.bias)
            self.observers["output"].observe(y, self.training)
            return y

        __call__ = forward

        def train(self, mode=True):
            self.training = bool(mode)
            return self

        def eval(self):
            return self.train(False)

    class FakeLoader:
        def __init__(self, images, labels):
            self.images = [np.asarray(x, np.float32) for x in images]
            self.labels = [np.asarray(y, np.int64) for y in labels]

        def __iter__(self):
            import torch

            for x, y in zip(self.images, self.labels):
                yield torch.from_numpy(x.copy()), torch.from_numpy(y.copy())

        def __len__(self):
            return len(self.images)

    return {"TinyObservedModel": TinyObservedModel, "FakeLoader": FakeLoader}


def _error_text(exc):
    import re

    text = re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(exc).__name__}: {exc}")
    return text if len(text) <= 300 else text[:297] + "..."


def main():
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    job = json.loads(sys.stdin.read())
    _limits(job.get("limits", {}))
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    sys.stdin = open(os.devnull)

    def send(row):
        out.write(json.dumps(row) + "\n")
        out.flush()

    import importlib
    import pkgutil
    import warnings

    import numpy as np

    import qlearn

    for info in pkgutil.iter_modules(qlearn.__path__):
        if info.name not in ("grading", "grade", "viz", "bridge"):
            importlib.import_module(f"qlearn.{info.name}")
    objects = {"ff": qlearn.FloatFormat}
    if job.get("tensors") or job.get("result") == "calibrate":
        # the cases carry torch tensors (or lab 10's stand-in model runs on them): torch is loaded
        # now, before the guard; a job without tensors never loads it here
        import torch  # noqa: F401
    if job.get("result") == "calibrate":
        objects.update(_lab10_objects())
    forbidden = list(job.get("forbidden", []))
    # a package named in ``forbidden`` (torch) is loaded now if the notebook imports it at its top,
    # so that it can be disarmed; otherwise importing it later is refused (see _guard)
    refused = set(job.get("refused", []))
    top_imports = set(job.get("top_imports", [])) - refused
    later = {name.split(".")[0] for name in forbidden} - {"qlearn"} - refused
    for top in sorted(later & top_imports):
        try:
            importlib.import_module(top)
        except Exception:  # noqa: BLE001 - not installed: its names are skipped
            pass
    if any(name.startswith("qlearn.bridge") for name in forbidden) and "torch" not in refused:
        importlib.import_module("qlearn.bridge")
    _disarm(forbidden, job["exercise"])
    for name in [m for m in sys.modules if m == "qlearn.grading" or m.startswith("qlearn.grading.")]:
        del sys.modules[name]
    sys.modules["qlearn.grading"] = _Stub("qlearn.grading")
    qlearn.grading = sys.modules["qlearn.grading"]
    sys.meta_path.insert(0, _StubFinder)
    loaded = set(m.split(".")[0] for m in sys.modules)
    _guard(job.get("protected", []), [os.getcwd(), *job.get("writable", [])], (loaded, later), job.get("checkout"), refused)
    warnings.simplefilter("ignore")
    send({"ready": True})  # the grader's time limit for this exercise starts now

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    notes = []
    for where, source in job["statements"]:
        try:
            exec(compile(source, where, "exec"), namespace)
        except BaseException as exc:  # noqa: BLE001 - a failing statement costs only what needs it
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, SystemExit):
                raise
            notes.append(f"{where}: {_error_text(exc)}")
    fn = namespace.get(job["function"])
    if not callable(fn):
        send({"case": 0, "status": "missing", "notes": notes[:5]})
        return
    for index, (args, kwargs) in enumerate(zip(job["cases"], job["kwargs"])):
        args, kwargs = decode(args, objects=objects), decode(kwargs, objects=objects)
        try:
            got = fn(*args, **kwargs)
        except NotImplementedError:
            send({"case": index, "status": "not done"})
            return
        except DelegationError as exc:
            send({"case": index, "status": "delegated", "error": str(exc)[:500]})
            return
        except RecursionError as exc:
            send({"case": index, "status": "error", "error": _error_text(exc), "notes": notes[:5]})
            return
        except BaseException as exc:  # noqa: BLE001 - the learner's error, reported in the feedback
            if isinstance(exc, KeyboardInterrupt):
                raise
            send({"case": index, "status": "error", "error": _error_text(exc), "notes": notes[:5]})
            return
        if job.get("result") == "calibrate":
            value = _summary_calibrate(got, args[0])
        else:
            value = encode(got)
        send({"case": index, "status": "ok", "value": value})


if __name__ == "__main__":
    main()
