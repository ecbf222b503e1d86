"""Which parts of a notebook the grader's child runs: imports, definitions and simple constants.

The grader never asks the notebook's kernel for a score. It reads the code cells itself (with the
``ast`` module, never running them) and keeps, in notebook order, the top-level statements that
define what the exercise functions need:

- ``import ...`` and ``from ... import ...`` (``import *`` too);
- ``def``, ``async def`` and ``class`` statements, with their decorators;
- assignments to plain names (``QMAX = 127``, ``EPS = np.finfo(np.float32).eps``,
  ``clamp = lambda x, lo, hi: ...``, ``WIDE = code_dtype(-2**31, 2**31 - 1)``, ``K += 1``);
- ``try`` blocks made only of those (``try: from scipy import x`` / ``except ImportError: x = None``).

A cell that starts with a magic that only times or captures it (``%%time``, ``%%capture``) keeps
its code.

Of those, the grader runs for an exercise only the statements its function needs (see
:func:`needed_for`): the statements that bind a name the function uses, then the names those use,
and so on, in notebook order, in the sandboxed child where the library's implementation of the
exercise is disarmed. Everything else is left out: expressions (demos, ``check(...)`` calls,
prints), loops, ``with``, ``if``, attribute or item assignments, ``global``, and other IPython
magics and shell escapes (``%matplotlib``, ``!pip``). A cell with a syntax error is skipped as a
whole, as the kernel would skip it. When a graded function uses a name that was left out, its call
fails with a ``NameError`` and the feedback says: define it inside the function or at the top level
of a cell.

>>> cells = ["import numpy as np\\nQMAX = 127\\nx = np.ones(3)\\nprint(x)",
...          "def f(v):\\n    return min(v, QMAX)\\nf(3)", "%matplotlib inline\\ndef g(:"]
>>> statements, tops, notes = extract(cells)
>>> [source.split("\\n")[0] for _, source in statements]
['import numpy as np', 'QMAX = 127', 'x = np.ones(3)', 'def f(v):']
>>> sorted(tops), notes
(['numpy'], ['cell 3: SyntaxError (the grader skips this cell): invalid syntax (line 2)'])
"""

from __future__ import annotations

import ast

__all__ = ["extract", "imported_packages", "needed_for"]

_CALLS = {"int", "float", "bool", "str", "tuple", "list", "dict", "frozenset", "set", "range", "len",
          "abs", "min", "max", "round", "slice", "complex"}
_MODULES = {"np", "numpy", "math"}
_SIMPLE = (ast.Constant, ast.Name, ast.Attribute, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp,
           ast.BinOp, ast.BoolOp, ast.Compare, ast.Subscript, ast.Slice, ast.Starred, ast.IfExp, ast.Call,
           ast.keyword, ast.Load, ast.Store, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _simple(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if not isinstance(sub, _SIMPLE):
            return False
        if isinstance(sub, ast.Call):
            name = _dotted(sub.func)
            if name is None or not (name in _CALLS or name.split(".")[0] in _MODULES):
                return False
        if isinstance(sub, ast.Name) and sub.id.startswith("__"):
            return False  # __builtins__, __import__, __loader__, ...
        if isinstance(sub, ast.Attribute) and sub.attr.startswith("__"):
            return False
    return True


def _names(target: ast.AST) -> bool:
    if isinstance(target, ast.Name):
        return True
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_names(t) for t in target.elts)
    return False


def _keep(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Assign):
        return all(_names(t) for t in node.targets)
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        return isinstance(node.target, ast.Name) and node.value is not None
    if isinstance(node, ast.Try):  # try: from scipy import x / except ImportError: x = None
        parts = [*node.body, *node.orelse, *node.finalbody, *(n for h in node.handlers for n in h.body)]
        return all(isinstance(n, ast.Pass) or _keep(n) for n in parts)
    return False


#: Cell magics that only time or capture their cell: the grader keeps the cell's code.
_TRANSPARENT_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")


def _python_source(cell: str) -> str:
    """The cell with IPython magics and shell escapes turned into plain Python (as IPython does).
    A cell magic that only times or captures its cell (``%%time``) is dropped and its code kept."""
    lines = cell.lstrip("\n").split("\n", 1)
    if lines[0].strip().split(" ")[0] in _TRANSPARENT_CELL_MAGICS:
        cell = lines[1] if len(lines) > 1 else ""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(cell)
    except Exception:  # noqa: BLE001 - no IPython, or a cell it cannot read: drop magic lines
        return "\n".join(line for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))


def _tops(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return {node.module.split(".")[0]}
    return set()


def extract(cells: list[str]) -> tuple[list[tuple[str, str]], set[str], list[str]]:
    """The statements to run, the top-level packages imported, and notes on skipped cells.

    ``cells`` are the notebook's code cells' sources, in order. Each statement comes with where it
    is (``"cell 4, line 2"``), for error messages.
    """
    statements: list[tuple[str, str]] = []
    tops: set[str] = set()
    notes: list[str] = []
    for number, cell in enumerate(cells, start=1):
        source = _python_source(cell)
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            notes.append(f"cell {number}: SyntaxError (the grader skips this cell): {exc.msg} (line {exc.lineno})")
            continue
        except (ValueError, MemoryError, RecursionError) as exc:
            notes.append(f"cell {number}: cannot be read ({type(exc).__name__}); the grader skips it")
            continue
        for node in tree.body:
            if _keep(node):
                tops |= _tops(node)
                decorated = getattr(node, "decorator_list", None)  # a segment would drop the decorators
                text = ast.unparse(node) if decorated else ast.get_source_segment(source, node)
                statements.append((f"cell {number}, line {node.lineno}", text or ast.unparse(node)))
                _INFO[statements[-1]] = (_bound(node), _used(node))
    return statements, tops, notes


_INFO: dict[tuple[str, str], tuple[set[str], set[str]]] = {}


def _bound(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Try):
        parts = [*node.body, *node.orelse, *node.finalbody, *(n for h in node.handlers for n in h.body)]
        return set().union(*(_bound(n) for n in parts if not isinstance(n, ast.Pass)))
    if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
        return {"*"}  # binds names no one can list: kept whenever anything is needed
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _used(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return set()
    if isinstance(node, ast.AugAssign):  # X += 1 needs the X bound before it
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {node.target.id}
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def needed_for(statements: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    """The statements (from :func:`extract`) that ``name`` needs, in notebook order.

    >>> statements, _, _ = extract(["import numpy as np\\nimport matplotlib\\nK = 2",
    ...                             "def g(x):\\n    return np.abs(x) * K\\ndef f(x):\\n    return g(x)"])
    >>> [s.split("\\n")[0] for _, s in needed_for(statements, "f")]
    ['import numpy as np', 'K = 2', 'def g(x):', 'def f(x):']
    """
    info = []
    for statement in statements:
        if statement not in _INFO:  # not from the last extract(): parse it again
            node = ast.parse(statement[1]).body[0]
            _INFO[statement] = (_bound(node), _used(node))
        info.append((statement, *_INFO[statement]))
    needed, changed = {name, "*"}, True
    while changed:
        changed = False
        for _, bound, used in info:
            if bound & needed and not used <= needed:
                needed |= used
                changed = True
    return [statement for statement, bound, _ in info if bound & needed]


def imported_packages(statements: list[tuple[str, str]]) -> set[str]:
    """The top-level packages the ``import`` statements among ``statements`` import."""
    tops: set[str] = set()
    for _, source in statements:
        if source.startswith(("import ", "from ")):
            tops |= _tops(ast.parse(source).body[0])
    return tops
