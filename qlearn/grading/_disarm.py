"""Disarming a callable for good: the mechanics shared by :func:`qlearn.grading.delegation.disarm` and
the grader's sandboxed child (``_runner.py``).

Both make a forbidden callable raise, whatever name it is called by: a Python function gets a new
``__code__`` that raises (every alias and every closure over it is disarmed, and no reference to
the original code is kept); a C function is replaced in every loaded module, in the class that owns
it, and in that class's subclasses. This file imports only the standard library and never
``qlearn.grading``: the child runs it from its source text, between ``_plain.py`` and ``_runner.py``,
so it must not start with a ``__future__`` import.
"""

import sys
import types

__all__ = ["raiser_code", "replace_everywhere"]


def raiser_code(function, message, error):
    """A code object for ``function`` that raises ``error(message)`` and keeps its free variables.

    ``error`` is the source text of an expression that gives the exception class when the new code
    runs, in the function's own globals (``"__qlearn_delegation_error__"``, a name put in builtins,
    or an import expression).

    >>> def f(x):
    ...     return x + 1
    >>> f.__code__ = raiser_code(f, "no", "ValueError")
    >>> f(1)
    Traceback (most recent call last):
    ValueError: no
    >>> def outer(**kwargs):
    ...     def g(x):
    ...         return kwargs, x
    ...     return g
    >>> g = outer(a=1)
    >>> g.__code__ = raiser_code(g, "closed over kwargs", "ValueError")
    >>> g(1)
    Traceback (most recent call last):
    ValueError: closed over kwargs
    """
    free = function.__code__.co_freevars
    name = function.__code__.co_name if function.__code__.co_name.isidentifier() else "disarmed"
    touch = f"lambda: ({', '.join(free)},)" if free else "None"
    source = ("def _outer():\n" + "".join(f"    {v} = None\n" for v in free)
              # parameter names no function closes over (a closure over a variable named kwargs)
              + f"    def {name}(*__qlearn_args, **__qlearn_kwargs):\n        {touch}\n"
              + f"        raise ({error})({message!r})\n"
              + f"    return {name}\n")
    namespace = {}
    exec(compile(source, "<disarmed>", "exec"), namespace)
    code = namespace["_outer"]().__code__
    if len(code.co_freevars) != len(free):  # pragma: no cover - the compiler keeps every touched name
        raise RuntimeError(f"cannot disarm {function.__qualname__}: free variables differ")
    return code


def replace_everywhere(targets, extra_holders=()):
    """Replace C functions wherever they are held: ``targets`` maps ``id(original)`` to
    ``(original, replacement)``. Every loaded module, the class that owns each function
    (``__objclass__``/``__self__``), ``extra_holders`` and the subclasses of every class holding
    one are searched; a holder that refuses ``setattr`` (a C type) is skipped."""
    if not targets:
        return
    holders = [m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)]
    for original, _ in targets.values():
        owner = getattr(original, "__objclass__", None) or getattr(original, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType):
            holders.append(owner if isinstance(owner, type) else type(owner))
    holders += [h for h in extra_holders if h is not None]
    for holder in holders:
        try:
            items = list(vars(holder).items())
        except TypeError:
            continue
        for attr, value in items:
            hit = targets.get(id(value))
            if hit is None or hit[0] is not value:
                continue
            try:
                setattr(holder, attr, hit[1])
            except (AttributeError, TypeError):
                pass
            if isinstance(holder, type):  # a C type refuses setattr: its Python subclasses may not
                for sub in holder.__subclasses__():
                    try:
                        setattr(sub, attr, hit[1])
                    except (AttributeError, TypeError):
                        pass
