"""Keep notebook files clean: counts in order, no metadata noise, the same JSON every time.

``python -m qlearn.grading.clean NOTEBOOK...`` rewrites notebooks in place (outputs are kept: nbval
compares them); ``--check`` only reports the files that would change. It does not execute anything.

What is removed (so that a diff shows only what changed):

- the history in execution counts: code cells are renumbered 1, 2, 3, ... in order, as a fresh
  "Run All" numbers them (a cell without outputs gets none). nbval needs a count on every cell
  that has outputs: it skips the comparison for a cell without one, and reports it as unrun.
- cell metadata other than ``tags``, ``nbgrader``, ``editable``, ``deletable`` and ``slideshow``
  (``execution`` timestamps, ``collapsed``, ``scrolled``, view state ...);
- notebook metadata other than ``kernelspec`` (set to the standard ``python3``), ``language_info``
  (its ``name`` only) and ``qlearn`` (``{"lab": "02"}``: which lab the notebook belongs to);
  saved widget state included.

In outputs, consecutive pieces of the same stream are merged into one (the kernel splits printed
text at arbitrary points), and widget views are dropped: without the saved widget state they
cannot be shown, and their model ids change on every run. What else the output holds stays, such
as its ``text/plain`` form or the ``image/png`` that qlearn's explorers put next to the widget.

Cells without an id get a deterministic one (``cell-<index>``), and files are written the way
Jupyter writes them (``indent=1``, sorted keys, a final newline).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4.rwbase import rejoin_lines

from qlearn.grading.registry import notebook_lab  # noqa: F401  (part of this module's API)

__all__ = ["clean_notebook", "dumps_notebook", "main", "notebook_lab", "read_notebook", "write_notebook"]

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELL_METADATA_KEPT = ("tags", "nbgrader", "editable", "deletable", "slideshow")


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read a notebook as it is on disk (``nbformat.read`` would invent random ids for cells without one)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError(f"{path} is not a Jupyter notebook (no list of cells)")
    if data.get("nbformat") != 4:
        raise ValueError(
            f"{path}: only nbformat 4 notebooks are supported, got nbformat {data.get('nbformat')}"
        )
    return rejoin_lines(nbformat.from_dict(data))  # sources on disk are lists of lines


def _clean_outputs(outputs: list) -> list:
    """Merge consecutive stream outputs (the kernel splits them at random) and drop widget views."""
    cleaned: list = []
    for output in outputs:
        if output.get("output_type") == "stream":
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            last = cleaned[-1] if cleaned else None
            same_stream = last is not None and last.get("output_type") == "stream"
            if same_stream and last.get("name") == output.get("name"):
                last["text"] += text
                continue
            output = nbformat.from_dict({**output, "text": text})
        elif WIDGET_VIEW in output.get("data", {}):
            output.data.pop(WIDGET_VIEW)
            if not output.data:
                continue
        cleaned.append(output)
    return cleaned


def clean_notebook(nb: Any) -> nbformat.NotebookNode:
    """A copy of ``nb`` with its counts renumbered and its metadata noise removed (outputs are kept)."""
    nb = rejoin_lines(nbformat.from_dict(copy.deepcopy(dict(nb))))  # also takes sources as lists of lines
    if nb.get("nbformat", 4) != 4:
        raise ValueError(f"only nbformat 4 notebooks are supported, got nbformat {nb.get('nbformat')}")
    nb.nbformat_minor = max(int(nb.get("nbformat_minor", 5)), 5)
    metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    if "qlearn" in nb.metadata:
        metadata["qlearn"] = nb.metadata["qlearn"]
    nb.metadata = nbformat.from_dict(metadata)
    used = {cell.get("id") for cell in nb.cells}
    count = 0
    for index, cell in enumerate(nb.cells):
        if not cell.get("id"):
            new_id = f"cell-{index}"
            while new_id in used:
                new_id += "x"
            cell.id = new_id
            used.add(new_id)
        kept = {key: cell.metadata[key] for key in CELL_METADATA_KEPT if key in cell.get("metadata", {})}
        if kept.get("tags") == []:
            del kept["tags"]
        cell.metadata = nbformat.from_dict(kept)
        if cell.cell_type == "code":
            cell.outputs = _clean_outputs(cell.get("outputs", []))
            count += 1
            cell.execution_count = count if cell.outputs else None
            for output in cell.outputs:
                if output.get("output_type") == "execute_result":
                    output.execution_count = count
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    return nb


def dumps_notebook(nb: Any) -> str:
    """The notebook as JSON text, exactly as Jupyter writes it, ending with a newline."""
    text = nbformat.writes(nbformat.from_dict(nb), version=4)
    return text if text.endswith("\n") else text + "\n"


def write_notebook(nb: Any, path: str | Path) -> None:
    """Write ``nb`` to ``path`` (creating the folder) with :func:`dumps_notebook`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_notebook(nb), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qlearn.grading.clean",
        description=("Clean notebooks in place: renumber execution counts, drop metadata noise "
                     "(outputs are kept)."),
    )
    parser.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a notebook is not clean")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.notebooks:
        text = path.read_text(encoding="utf-8")
        clean = dumps_notebook(clean_notebook(read_notebook(path)))
        if clean != text:
            dirty.append(path)
            if not args.check:
                path.write_text(clean, encoding="utf-8")
                print(f"cleaned {path}")
    if args.check and dirty:
        names = " ".join(str(p) for p in dirty)
        print(f"not clean: {names}\nfix with: python -m qlearn.grading.clean {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
