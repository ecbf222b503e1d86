"""Delegation earns nothing: spot (or block) a solution that hands its work to the library.

Each :class:`~qlearn.grading.Exercise` names, in ``forbidden``, the library callables that do its
job (``"qlearn.affine.quantize"`` and ``"torch.quantize_per_tensor"`` for exercise 02.1). Anything
defined in ``qlearn.grading`` is always forbidden too: the references, ``implementation``,
``reference``, ``check`` and the case builders. Two tools enforce it:

- :class:`Watcher` (used by ``check``): runs the learner's call under ``sys.setprofile`` (and
  ``threading.setprofile``) and stops at the first call that reaches a forbidden callable, a Python
  function by its code object, a C function by identity, or any code whose file lies inside the
  ``qlearn/grading`` package. The name the learner bound it to does not matter
  (``from qlearn import quantize as q``, a lambda around it, ``EXERCISES[...].reference``).
- :func:`disarm` (used by the grader in its sandboxed child process): makes every forbidden
  callable raise :class:`DelegationError`, for every alias, by swapping the function's
  ``__code__`` (no reference to the original is kept) or, for a C function, by replacing it in
  every module and class that holds it.

Case fixtures that the learner's function is *meant* to call (lab 10's ``TinyObservedModel`` and
``FakeLoader``) are declared with :func:`fixture` and never count as delegation.

>>> from qlearn.grading import get_exercise
>>> names = sorted(resolve_forbidden(get_exercise("02.1")).values())
>>> "qlearn.affine.quantize" in names
True
>>> watcher = Watcher(get_exercise("02.1"))
>>> watcher.call(lambda: abs(-2))
2
>>> watcher.violation is None
True
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from qlearn.grading._disarm import raiser_code, replace_everywhere

__all__ = [
    "GRADING_PACKAGE",
    "DelegationError",
    "Violation",
    "Watcher",
    "disarm",
    "fixture",
    "grading_name",
    "is_grading_code",
    "resolve_forbidden",
    "resolve_name",
]

#: Everything defined in this package is forbidden in every exercise.
GRADING_PACKAGE = "qlearn.grading"

_HERE = os.path.dirname(os.path.abspath(__file__))
_GRADING_DIRS = tuple({os.path.join(_HERE, ""), os.path.join(os.path.realpath(_HERE), "")})
_SELF_FILES = frozenset({__file__, os.path.abspath(__file__), os.path.realpath(__file__)})
# disarm() never disarms its own machinery: this module and the mechanics it shares with the child
_KEEP_FILES = _SELF_FILES | {os.path.realpath(sys.modules[raiser_code.__module__].__file__)}
_FIXTURE_CODES: set[tuple[str, int, str]] = set()

# Captured at import time: nothing the learner's namespace patches later can change them.
_getprofile, _setprofile = sys.getprofile, sys.setprofile
_thread_setprofile = threading.setprofile
_FunctionType, _ModuleType = types.FunctionType, types.ModuleType
_isinstance, _getattr, _id, _type = isinstance, getattr, id, type


class DelegationError(RuntimeError):
    """Raised when a solution calls the library's implementation of its own exercise.

    >>> raise DelegationError("qlearn.affine.quantize is the library's implementation of exercise 02.1")
    Traceback (most recent call last):
    ...
    qlearn.grading.delegation.DelegationError: qlearn.affine.quantize is the library's implementation of exercise 02.1
    """


@dataclass(frozen=True)
class Violation:
    """The first forbidden call seen: its dotted ``name`` and ``kind``.

    ``kind`` is ``"library"`` (a callable the exercise forbids), ``"grading"`` (code of
    ``qlearn.grading``) or ``"watch"`` (``sys.setprofile``: switching the watch off).
    """

    name: str
    kind: str

    def describe(self, exercise_id: str) -> str:
        """One sentence that says what was called and why it is not allowed.

        >>> Violation("qlearn.affine.quantize", "library").describe("02.1")
        "your function called qlearn.affine.quantize, the library's own implementation of exercise 02.1"
        >>> Violation("qlearn.grading.labs.lab00.clamp", "grading").describe("00.1")
        'your function called qlearn.grading.labs.lab00.clamp, part of the grading package (qlearn.grading)'
        """
        if self.kind == "grading":
            return f"your function called {self.name}, part of the grading package ({GRADING_PACKAGE})"
        if self.kind == "watch":
            return f"your function called {self.name}, which would switch off the check that watches for delegation"
        if self.kind == "torch":
            return (f"your function called {self.name}: exercise {exercise_id} takes numpy inputs and is to be "
                    f"written with numpy, not with torch's kernels")
        return f"your function called {self.name}, the library's own implementation of exercise {exercise_id}"


def _torch_dir() -> str | None:
    """torch's package folder (with a trailing separator), once torch is imported; else None."""
    torch = sys.modules.get("torch")
    path = _getattr(torch, "__file__", None) if torch is not None else None
    return os.path.join(os.path.dirname(path), "") if path else None


def _code_key(code: types.CodeType) -> tuple[str, int, str]:
    """A code object's identity that survives ``code.replace()`` and ``FunctionType(code, ...)``."""
    return (os.path.realpath(code.co_filename), code.co_firstlineno, code.co_name)


def fixture(obj: Any) -> Any:
    """Mark a class (all its methods) or a function of ``qlearn.grading`` as a case fixture.

    A fixture is an input that the learner's function is meant to use (a stand-in model, a fake
    loader): calling it is not delegation. Returns ``obj`` unchanged, so it works as a decorator.

    >>> @fixture
    ... class Loader:
    ...     def __iter__(self):
    ...         yield 1
    >>> list(Loader())
    [1]
    """
    for function, _ in _functions_of(obj, getattr(obj, "__qualname__", "fixture")):
        code = getattr(function, "__code__", None)
        if code is not None:
            _FIXTURE_CODES.add(_code_key(code))
    return obj


def is_grading_code(code: types.CodeType) -> bool:
    """Whether ``code`` was defined in the ``qlearn/grading`` package (fixtures excepted).

    >>> from qlearn.grading.labs.lab00 import clamp
    >>> is_grading_code(clamp.__code__), is_grading_code(is_grading_code.__code__)
    (True, False)
    """
    filename = code.co_filename
    if not filename.startswith(_GRADING_DIRS):
        filename = os.path.realpath(filename)
        if not filename.startswith(_GRADING_DIRS):
            return False
    if filename in _SELF_FILES:
        return False  # the watcher's own code (its context exit)
    return _code_key(code) not in _FIXTURE_CODES


def grading_name(code: types.CodeType) -> str:
    """The dotted name of a function defined in ``qlearn/grading``, from its code object.

    >>> from qlearn.grading.labs.lab00 import clamp
    >>> grading_name(clamp.__code__)
    'qlearn.grading.labs.lab00.clamp'
    """
    path = os.path.realpath(code.co_filename)
    for root in _GRADING_DIRS:
        if path.startswith(root):
            relative = os.path.splitext(path[len(root):])[0].replace(os.sep, ".")
            module = GRADING_PACKAGE if relative == "__init__" else f"{GRADING_PACKAGE}.{relative}"
            qualname = getattr(code, "co_qualname", code.co_name).replace(".<locals>", "")
            return f"{module}.{qualname}"
    return getattr(code, "co_qualname", code.co_name)


# --- resolving dotted names -------------------------------------------------------------------

def resolve_name(name: str, *, import_missing: bool = True) -> Any:
    """The object a dotted name points to, or ``None`` when its module cannot be imported.

    The longest importable module prefix is imported, the rest is looked up as attributes
    (``"torch.ao.quantization.observer.MinMaxObserver.calculate_qparams"`` works). With
    ``import_missing=False`` a name whose top-level package is not imported yet gives ``None``.
    A module that exists but lacks the attribute is an error: the catalogue has a typo.

    >>> resolve_name("qlearn.affine.quantize").__name__
    'quantize'
    >>> resolve_name("no_such_package.f") is None
    True
    """
    if not isinstance(name, str) or not name or name.startswith(".") or ".." in name:
        raise ValueError(f"a forbidden name must be a dotted name such as 'qlearn.affine.quantize', got {name!r}")
    parts = name.split(".")
    if not import_missing and parts[0] not in sys.modules:
        return None
    try:
        obj = importlib.import_module(parts[0])
    except ImportError:
        return None
    for index, attr in enumerate(parts[1:], start=1):
        # an attribute wins over a submodule of the same name (torch.ao.quantization.fuse_modules is
        # both a module and the function the package exports)
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
            continue
        if isinstance(obj, types.ModuleType):
            try:
                obj = importlib.import_module(".".join(parts[: index + 1]))
                continue
            except ImportError:
                pass
        raise LookupError(f"the forbidden name {name!r} does not exist: {attr!r} is not an attribute of "
                          f"{type(obj).__name__} {getattr(obj, '__name__', obj)!r}; fix the exercise's "
                          f"forbidden list")
    return obj


def _unwrap(value: Any) -> Any:
    """The function itself: no staticmethod/classmethod/bound-method shell, no decorator wrapper.

    A decorator's wrapper (``@torch.no_grad()``, ``functools.wraps``) shares its code with every
    other function it decorates, so the wrapped function is the one that identifies the callable.
    """
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, types.MethodType):
        value = value.__func__
    seen = 0
    while isinstance(value, types.FunctionType) and isinstance(getattr(value, "__wrapped__", None),
                                                               types.FunctionType) and seen < 20:
        value, seen = value.__wrapped__, seen + 1
    return value


def _functions_of(obj: Any, name: str) -> list[tuple[Any, str]]:
    """The callables behind ``obj``: itself, or for a class the methods defined in its body."""
    obj = _unwrap(obj)
    if isinstance(obj, type):
        found: list[tuple[Any, str]] = []
        for attr, value in vars(obj).items():
            value = _unwrap(value)
            if isinstance(value, property):
                found += [(f, f"{name}.{attr}") for f in (value.fget, value.fset, value.fdel) if f is not None]
            elif isinstance(value, functools.partialmethod):
                continue
            elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
                                    types.WrapperDescriptorType, types.ClassMethodDescriptorType)):
                found.append((value, f"{name}.{attr}"))
        init = _unwrap(getattr(obj, "__init__", None))
        # constructing it counts, even with an inherited __init__ from its own package; not one from
        # another library (torch.autograd.Function.__init__ is shared by every autograd Function:
        # disarming it for one forbidden class would give all of them that class's message)
        if ("__init__" not in vars(obj) and isinstance(init, types.FunctionType)
                and init.__module__.split(".")[0] == obj.__module__.split(".")[0]):
            found.append((init, f"{name}.__init__"))
        return found
    if isinstance(obj, functools.partial):
        return _functions_of(obj.func, name)
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
                        types.WrapperDescriptorType, types.ClassMethodDescriptorType)):
        return [(obj, name)]
    if callable(obj):  # an instance with __call__ (torch.ops packets and the like): its class's method
        call = getattr(type(obj), "__call__", None)
        return [(call, name)] if call is not None else []
    return []


_RESOLVED: dict[tuple, dict[Any, str]] = {}


def resolve_forbidden(exercise: Any, *, import_missing: bool = True) -> dict[Any, str]:
    """The callables an exercise may not use, each with its dotted name.

    ``exercise`` is an :class:`~qlearn.grading.Exercise` (its ``forbidden`` names) or an iterable
    of dotted names. Functions and builtins count as themselves (a decorated function as the
    function it wraps); a class counts as the methods, properties, ``__init__`` and ``__new__``
    defined in its body, plus the ``__init__`` it inherits if it has none of its own (building one
    counts). Names whose module cannot be imported (no torch) are skipped. Everything in ``qlearn.grading`` is forbidden as well, but by file, not by
    name: see :func:`is_grading_code`.

    >>> from qlearn.grading import get_exercise
    >>> sorted(resolve_forbidden(["qlearn.packing.pack"]).values())
    ['qlearn.packing.pack']
    >>> "qlearn.observers.MinMaxObserver._observe" in resolve_forbidden(["qlearn.observers.MinMaxObserver"]).values()
    True
    """
    names = tuple(getattr(exercise, "forbidden", exercise))
    loaded = tuple(name.split(".")[0] in sys.modules for name in names)
    key = (names, import_missing, loaded)
    if key not in _RESOLVED:
        found: dict[Any, str] = {}
        for name in names:
            obj = resolve_name(name, import_missing=import_missing)
            if obj is not None:
                for function, dotted in _functions_of(obj, name):
                    found.setdefault(function, dotted)
        _RESOLVED[key] = found
    return dict(_RESOLVED[key])


# --- watching a call --------------------------------------------------------------------------

class Watcher:
    """Run a learner's function and stop at the first forbidden call it makes.

    ``Watcher(exercise).call(fn, *args, **kwargs)`` returns ``fn``'s result; if ``fn`` reached a
    forbidden callable, ``violation`` says which one, and the call was stopped there with a
    :class:`DelegationError` (raised inside ``fn``; ``call`` re-raises it unless ``fn`` swallowed
    it, and the violation stands either way). Only the call itself is watched. Switching the
    watch off (``sys.setprofile``, ``threading.setprofile``) counts as a violation too.

    With ``import_missing=False`` (the default, so that a check never imports torch) the names
    of packages that are not imported yet are skipped; :meth:`stale` tells when the call
    imported one, and ``run_case`` then resolves the names again and repeats the case.

    >>> from qlearn.grading import get_exercise
    >>> from qlearn import quantize as q
    >>> watcher = Watcher(get_exercise("02.1"))
    >>> watcher.call(lambda x: q(x, 1.0, 0, -8, 7), 3.0)
    Traceback (most recent call last):
    ...
    qlearn.grading.delegation.DelegationError: your function called qlearn.affine.quantize, the library's own implementation of exercise 02.1
    >>> watcher.violation
    Violation(name='qlearn.affine.quantize', kind='library')
    """

    def __init__(self, exercise: Any, *, import_missing: bool = False, no_torch: bool = False) -> None:
        self.exercise = exercise
        self.no_torch = no_torch  # any call into torch counts (an exercise on numpy inputs)
        self.exercise_id = getattr(exercise, "id", "?")
        self.import_missing = import_missing
        self.violation: Violation | None = None
        self._load()

    def _load(self) -> None:
        names = tuple(getattr(self.exercise, "forbidden", self.exercise))
        self._loaded = {name.split(".")[0] for name in names if name.split(".")[0] in sys.modules}
        self._tops = {name.split(".")[0] for name in names}
        forbidden = resolve_forbidden(self.exercise, import_missing=self.import_missing)
        self._codes: dict[tuple[str, int, str], str] = {}
        self._c: dict[int, str] = {}
        self._keep = list(forbidden)  # keeps the ids of the C functions valid
        self._c_method_names: set[str] = set()
        for function, name in forbidden.items():
            code = getattr(function, "__code__", None)
            if isinstance(function, types.FunctionType) and code is not None:
                self._codes[_code_key(code)] = name
            else:
                self._c[id(function)] = name
                if isinstance(function, (types.MethodDescriptorType, types.WrapperDescriptorType)):
                    self._c_method_names.add(function.__name__)
        for function, name in ((sys.setprofile, "watch:sys.setprofile"),
                               (threading.setprofile, "watch:threading.setprofile")):
            self._keep.append(function)  # switching the watch off counts as tampering with the check
            if isinstance(function, types.FunctionType):
                self._codes[_code_key(function.__code__)] = name
            else:
                self._c[id(function)] = name
        self._seen: dict[int, tuple[Any, str | None]] = {}

    def stale(self) -> bool:
        """Whether a package named in ``forbidden`` was imported since the names were resolved."""
        return any(top in sys.modules for top in self._tops - self._loaded)

    def _code_verdict(self, code: types.CodeType) -> str | None:
        entry = self._seen.get(_id(code))
        if entry is not None and entry[0] is code:
            return entry[1]
        name = self._codes.get(_code_key(code))
        if name is None and is_grading_code(code):
            name = "grading:" + grading_name(code)
        if name is None and self.no_torch and _torch_dir() and code.co_filename.startswith(_torch_dir()):
            name = "torch:torch." + getattr(code, "co_qualname", code.co_name)
        self._seen[_id(code)] = (code, name)
        return name

    def _c_verdict(self, function: Any) -> str | None:
        name = self._c.get(_id(function))
        if name is None and self._c_method_names:
            method = _getattr(function, "__name__", None)
            owner = _getattr(function, "__self__", None)
            if method in self._c_method_names and owner is not None and not _isinstance(owner, _ModuleType):
                name = self._c.get(_id(_getattr(_type(owner), method, None)))
        if name is None and self.no_torch:
            owner = _getattr(function, "__self__", None)
            module = _getattr(function, "__module__", None) or _getattr(owner, "__module__", None) \
                or (_getattr(owner, "__name__", None) if _isinstance(owner, _ModuleType) else None) or ""
            if _isinstance(module, str) and (module == "torch" or module.startswith("torch.")):
                qualname = str(_getattr(function, "__qualname__", _getattr(function, "__name__", "?")))
                name = "torch:" + (qualname if qualname.startswith("torch") else "torch." + qualname)
        return name

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if self.violation is not None:
            return
        if event == "call":
            name = self._code_verdict(frame.f_code)
        elif event == "c_call":
            name = self._c_verdict(arg)
            if name is not None and name.startswith("watch:") and frame.f_code.co_filename in _SELF_FILES:
                return  # the watcher itself, restoring the previous profile at the end of the call
        else:
            return
        if name is not None:
            if name.startswith("grading:"):
                self.violation = Violation(name[len("grading:"):], "grading")
            elif name.startswith("watch:"):
                self.violation = Violation(name[len("watch:"):], "watch")
            elif name.startswith("torch:"):
                self.violation = Violation(name[len("torch:"):], "torch")
            else:
                self.violation = Violation(name, "library")
            raise DelegationError(self.violation.describe(self.exercise_id))

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` under the watch (and every thread it starts)."""
        previous = _getprofile()
        _thread_setprofile(self._profile)
        _setprofile(self._profile)
        try:
            return fn(*args, **kwargs)
        finally:
            _setprofile(previous)
            _thread_setprofile(None)

    def refresh(self) -> None:
        """Resolve the forbidden names again (a package named there was imported meanwhile)."""
        self._load()


# --- disarming, for the grader's child process ------------------------------------------------

def _raiser_code(function: types.FunctionType, message: str) -> types.CodeType:
    """A code object that raises ``DelegationError(message)``, with ``function``'s free variables
    (the mechanics are shared with the grader's child: :mod:`qlearn.grading._disarm`)."""
    return raiser_code(function, message,
                       "__import__('qlearn.grading.delegation', fromlist=['DelegationError']).DelegationError")


def _c_raiser(message: str, name: str) -> Callable[..., Any]:
    def disarmed(*args: Any, **kwargs: Any) -> Any:
        raise DelegationError(message)
    disarmed.__name__ = disarmed.__qualname__ = name.rsplit(".", 1)[-1]
    return disarmed


def _grading_functions() -> list[tuple[Any, str]]:
    """Every function defined in the loaded ``qlearn.grading`` modules, and the exercises' callables."""
    found: list[tuple[Any, str]] = []
    for module_name, module in list(sys.modules.items()):
        if not (module_name == GRADING_PACKAGE or module_name.startswith(GRADING_PACKAGE + ".")):
            continue
        if module_name == __name__ or module is None:
            continue
        for attr, value in list(vars(module).items()):
            value = _unwrap(value)
            if getattr(value, "__module__", None) != module_name:
                continue
            found += _functions_of(value, f"{module_name}.{attr}")
    registry = sys.modules.get(GRADING_PACKAGE + ".registry")
    if registry is not None:
        for exercise in list(registry._REGISTRY.values()):
            for attr in ("reference", "cases", "compare"):
                value = getattr(exercise, attr)
                if value is not None:
                    found.append((value, f"EXERCISES[{exercise.id!r}].{attr}"))
            found += [(w, f"EXERCISES[{exercise.id!r}].wrong_answers[{k!r}]")
                      for k, w in exercise.wrong_answers.items()]
    return found


def disarm(forbidden: Iterable[Any], *, grading: bool = True) -> list[str]:
    """Make every forbidden callable raise :class:`DelegationError`, whatever name it is called by.

    ``forbidden`` holds exercises (``Exercise`` objects or ids such as ``"02.1"``: their
    ``forbidden`` names) and dotted names. A Python function gets a new ``__code__`` that raises
    (so every alias and every closure over it is disarmed, and the original code is dropped); a C
    function is replaced in every loaded module and class that holds it. With ``grading=True``
    every function of ``qlearn.grading`` is disarmed too (fixtures and this module excepted).
    Meant for a throwaway process that then runs learner code: it cannot be undone. Returns the
    names disarmed.

    >>> import subprocess, sys
    >>> code = ("from qlearn.grading.delegation import disarm; disarm(['03.3']); import qlearn; "
    ...         "qlearn.pack([1, 2], 4)")
    >>> out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    >>> out.stderr.strip().splitlines()[-1]
    "qlearn.grading.delegation.DelegationError: qlearn.packing.pack is the library's implementation of exercise 03.3; write it yourself"
    """
    from qlearn.grading.registry import EXERCISES, get_exercise

    owners: dict[str, list[str]] = {}
    for item in forbidden:
        if isinstance(item, str) and not item[:1].isdigit():
            owners.setdefault(item, [])
            continue
        exercise = get_exercise(item) if isinstance(item, str) else item
        for name in exercise.forbidden:
            owners.setdefault(name, []).append(exercise.id)
    targets: list[tuple[Any, str, str]] = []
    for name, ids in owners.items():
        obj = resolve_name(name)
        if obj is None:
            continue
        which = (f"exercise {ids[0]}" if len(ids) == 1 else "exercises " + ", ".join(ids)) if ids else "an exercise"
        message = f"{name} is the library's implementation of {which}; write it yourself"
        targets += [(function, dotted, message) for function, dotted in _functions_of(obj, name)]
    if grading:
        len(EXERCISES)  # load every lab first
        for function, dotted in _grading_functions():
            message = (f"{dotted} is part of the grading package ({GRADING_PACKAGE}); a solution may not "
                       f"call it: write it yourself")
            targets.append((function, dotted, message))
    done: list[str] = []
    c_targets: dict[int, tuple[Any, Callable[..., Any]]] = {}
    for function, dotted, message in targets:
        if isinstance(function, types.FunctionType):
            code = function.__code__
            if code.co_filename == "<disarmed>" or _code_key(code) in _FIXTURE_CODES:
                continue
            if os.path.realpath(code.co_filename) in _KEEP_FILES:
                continue
            function.__code__ = _raiser_code(function, message)
            done.append(dotted)
        elif id(function) not in c_targets:
            c_targets[id(function)] = (function, _c_raiser(message, dotted))
            done.append(dotted)
    replace_everywhere(c_targets)  # every module, the owning class and its subclasses
    return done
