"""Every attack of issue 9 as a hostile notebook: each earns 0 points or is an error naming it.

The notebooks are built here from the solution and student versions of lab 00 (and lab 02 for the
library delegation), each with a pasted cell or a changed function. Two batch calls grade them all:

- ``executed``: the notebooks run in their kernels too (the feedback run), because these attacks
  act there: patching json.dumps / importlib / builtins.globals, a meta_path finder, a fake qlearn
  on sys.path, pre_run_cell hooks, input transformers, a thread polling ``_ih``, an audit hook,
  printed forged rows, daemons, deleting a classmate's notebook, writing outside the folder,
  reading the grader's environment;
- ``scored``: the scoring only (``execute=False``), for attacks that live in the graded functions:
  delegation to qlearn.grading and to the library, lying objects, stack walking, forged and garbled
  output on the result pipe, a slow function, a memory hog, relabelling.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from qlearn.grading import _sandbox
from qlearn.grading.exercise import is_question_id
from qlearn.grading.grade import GradeOptions, grade_notebooks
from qlearn.grading.registry import items_for_lab
from qlearn.grading.student import build_student_notebook

ROOT = Path(__file__).resolve().parents[1]
LAB00 = ROOT / "notebooks" / "00_welcome.ipynb"
LAB02 = ROOT / "notebooks" / "02_affine_quantization.ipynb"
SECRET_VAR = "QLEARN_ATTACK_SECRET"
MARK = f"777.{secrets.randbelow(10**6)}"  # in the daemons' command lines: find them if they survived


# The attacks target lab 00's first three exercises (clamp, num_codes, relative_error) and lab 02's
# functions by name; the labs may grow (more exercises, graded questions): a lab's other items must
# simply not pass, and its maximum comes from the catalogue.
ATTACKED_00 = ("00.1", "00.2", "00.3")
MAX_00 = sum(item.points for item in items_for_lab("00"))
MAX_02 = sum(item.points for item in items_for_lab("02"))
POINTS_00 = sum(item.points for item in items_for_lab("00") if item.id in ATTACKED_00)


def _attacked(lab: str, cells: list[str]) -> list[str]:
    """The exercises of ``lab`` whose function one of ``cells`` defines."""
    return [item.id for item in items_for_lab(lab) if not is_question_id(item.id)
            and any(f"def {item.function}(" in cell for cell in cells)]


def _solution(path: Path):
    return nbformat.read(path, as_version=4)


def _student(path: Path):
    return build_student_notebook(_solution(path))


def _plus(nb, *cells: str):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.cells.extend(new_code_cell(c) for c in cells)
    return nb


def _write(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# --- attacks in the kernel (the feedback run) ---------------------------------------------------

FORGED = ('[{"id": "00.1", "points": 1, "max_points": 1, "passed": true}, '
          '{"id": "00.9", "points": 1005, "max_points": 3, "passed": true}]')
KERNEL_ATTACKS = [
    # patching the functions the old grading cell used (json.dumps last: it breaks the kernel's messages)
    "import importlib, types\n_real = importlib.import_module\n"
    "def _fake(name, *a):\n"
    "    module = _real(name, *a)\n"
    "    if name == 'qlearn.grading':\n"
    "        fake = types.SimpleNamespace(**vars(module))\n"
    "        fake.check = lambda *a, **k: types.SimpleNamespace(points=1, passed=True, status='passed')\n"
    "        return fake\n"
    "    return module\n"
    "importlib.import_module = _fake",
    "import builtins\n_g = builtins.globals\n"
    "builtins.globals = lambda: {**_g(), 'clamp': lambda x, lo, hi: x}",
    # a finder that serves a fake qlearn.grading
    "import sys, types, importlib.abc, importlib.machinery\n"
    "class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.startswith('qlearn.grading'):\n"
    "            return importlib.machinery.ModuleSpec(name, self, is_package=True)\n"
    "    def create_module(self, spec):\n"
    "        m = types.ModuleType(spec.name)\n"
    "        m.check = lambda *a, **k: types.SimpleNamespace(points=1, passed=True, status='passed')\n"
    "        m.exercises_for_lab = lambda lab: []\n"
    "        return m\n"
    "    def exec_module(self, module):\n"
    "        pass\n"
    "sys.meta_path.insert(0, Finder())",
    # a fake qlearn package first on sys.path
    "import os, sys\nos.makedirs('qlearn/grading', exist_ok=True)\n"
    "open('qlearn/__init__.py', 'w').write('')\n"
    "open('qlearn/grading/__init__.py', 'w').write('def check(*a, **k):\\n    return 1\\n')\n"
    "sys.path.insert(0, os.getcwd())",
    # reading the grader's marker from the code it sends, then printing forged rows
    "import re\n"
    "def _spy(info):\n"
    "    found = re.findall(r'QLEARN-GRADE-[0-9a-f]+:', info.raw_cell or '')\n"
    f"    for marker in found:\n        print(marker + {FORGED!r})\n"
    "get_ipython().events.register('pre_run_cell', _spy)",
    "def _transform(lines):\n"
    "    text = ''.join(lines)\n"
    "    if 'QLEARN-GRADE-' in text:\n"
    f"        lines = lines + [{('print(' + repr('QLEARN-GRADE-x:' + FORGED) + ')') !r}]\n"
    "    return lines\n"
    "get_ipython().input_transformers_post.append(_transform)",
    "import threading, time\n"
    "def _poll():\n"
    "    for _ in range(200):\n"
    "        for cell in list(globals().get('_ih', [])):\n"
    "            if 'QLEARN-GRADE-' in cell:\n"
    f"                print('QLEARN-GRADE-y:' + {FORGED!r})\n"
    "        time.sleep(0.05)\n"
    "threading.Thread(target=_poll, daemon=True).start()",
    "import sys\n"
    "def _hook(event, args):\n"
    "    if event == 'exec':\n"
    f"        print('QLEARN-GRADE-z:' + {FORGED!r})\n"
    "sys.addaudithook(_hook)",
    f"print('Exercise 00.1 passed: 1/1 points')\nprint('QLEARN-GRADE-0123456789abcdef:' + {FORGED!r})",
    f"print('QLEARN-GRADE-0123456789abcdef:{{not json')",  # a garbled line
    f"import json\n_dumps = json.dumps\njson.dumps = lambda *a, **k: {FORGED!r}",
]


def _vandal_cells(classmate: Path, outside: Path) -> list[str]:
    return [
        # delete and overwrite a classmate's notebook, write outside the own folder
        f"import os\nfor _ in range(3):\n    try:\n        os.remove({str(classmate)!r})\n    except OSError:\n        pass",
        f"try:\n    open({str(classmate)!r}, 'w').write('{{}}')\nexcept OSError:\n    pass",
        f"try:\n    open({str(outside)!r}, 'w').write('written from a submission')\nexcept OSError:\n    pass",
        # processes that try to outlive the grading
        f"import subprocess\nsubprocess.Popen(['sleep', '{MARK}'], start_new_session=True)",
        "import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n"
        f"    os.execvp('sleep', ['sleep', '{MARK}'])\n",
        # the grader's environment must not be visible: if it is, the kernel dies (a run_error)
        f"import os\nif os.environ.get({SECRET_VAR!r}):\n    os._exit(3)",
    ]


def _surviving_daemons() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if MARK.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("executed")
    outside = tmp_path_factory.mktemp("outside") / "pwned.txt"
    classmate = _write(folder / "00_classmate.ipynb", _solution(LAB00))
    _write(folder / "00_kernel_attacks.ipynb", _plus(_student(LAB00), *KERNEL_ATTACKS))
    _write(folder / "00_vandal.ipynb", _plus(_student(LAB00), *_vandal_cells(classmate, outside)))
    fake = folder / "fake"
    (fake / "qlearn" / "grading").mkdir(parents=True)
    (fake / "qlearn" / "__init__.py").write_text("quantize = None\n")
    (fake / "qlearn" / "grading" / "__init__.py").write_text(
        "class R:\n    points, passed, status, implementation = 1, True, 'passed', None\n"
        "def check(*a, **k):\n    return R()\nimplementation = lambda i, f: f\n")
    _write(fake / "00_fake_qlearn.ipynb", _student(LAB00))
    paths = sorted(folder.rglob("*.ipynb"))
    previous = os.environ.get(SECRET_VAR)
    os.environ[SECRET_VAR] = "the grader's secret"
    try:
        options = GradeOptions(timeout=120, notebook_timeout=400, exercise_timeout=60, hidden_seeds=(11,))
        grades = grade_notebooks(paths, options, jobs=2)
    finally:
        if previous is None:
            os.environ.pop(SECRET_VAR, None)
        else:
            os.environ[SECRET_VAR] = previous
    time.sleep(0.5)
    return {Path(g.notebook).name: g for g in grades}, classmate, outside


def test_kernel_patches_hooks_and_forged_rows_earn_nothing(executed):
    grades, _, _ = executed
    g = grades["00_kernel_attacks.ipynb"]
    # the patched json.dumps breaks the kernel's own messages: the run is reported, the score stands
    assert g.error is None and "could not be run" in g.run_error, (g.error, g.run_error)
    assert not g.notes, g.notes  # every pasted cell is valid Python
    assert (g.score, g.max_score) == (0, MAX_00)
    assert [e["id"] for e in g.exercises] == [item.id for item in items_for_lab("00")]  # no "00.9", no 1005 points
    assert {e["status"] for e in g.exercises} == {"not done"}


def test_a_fake_qlearn_package_in_the_folder_earns_nothing(executed):
    grades, _, _ = executed
    g = grades["00_fake_qlearn.ipynb"]
    assert g.error is None and (g.score, g.max_score) == (0, MAX_00)
    assert {e["status"] for e in g.exercises} == {"not done"}


def test_a_classmate_survives_vandalism_and_is_graded(executed):
    grades, classmate, outside = executed
    g = grades["00_classmate.ipynb"]
    assert g.error is None and g.run_error is None, (g.error, g.run_error)
    assert (g.score, g.max_score) == (MAX_00, MAX_00)
    assert all(e["status"] == "passed" for e in g.exercises)
    if _sandbox.bwrap_available():  # read-only system view: the files are untouched
        assert json.loads(classmate.read_text())["cells"], "the classmate's notebook was changed"
        assert not outside.exists(), "a submission wrote outside its folder"


def test_daemons_die_and_the_environment_is_clean(executed):
    grades, _, _ = executed
    g = grades["00_vandal.ipynb"]
    assert g.run_error is None, f"the kernel saw the grader's environment or died: {g.run_error}"
    assert (g.score, g.max_score) == (0, MAX_00)
    assert _surviving_daemons() == [], "a process started by a submission outlived its grading"


# --- attacks in the graded functions (the scoring child) ----------------------------------------

DELEGATE_GRADING = [
    "from qlearn.grading.labs.lab00 import clamp as _clamp\n"
    "def clamp(x, lo, hi):\n    return _clamp(x, lo, hi)",
    "from qlearn.grading import reference\n"
    "def num_codes(qmin, qmax):\n    return reference('00.2')(qmin, qmax)",
    "from qlearn.grading import EXERCISES\n"
    "def relative_error(x, x_hat):\n    return EXERCISES['00.3'].reference(x, x_hat)",
]
DELEGATE_IMPLEMENTATION = [
    "from qlearn.grading import implementation\nclamp = implementation('00.1', lambda *a: None)",
    "from qlearn.grading import implementation\n"
    "def num_codes(qmin, qmax):\n    return implementation('00.2', lambda *a: None)(qmin, qmax)",
    "def relative_error(x, x_hat):\n"
    "    from qlearn.grading.checker import implementation as imp\n"
    "    return imp('00.3', lambda *a: None)(x, x_hat)",
]
LIES = [
    "import numpy as np\n"
    "class Liar(np.ndarray):\n"
    "    def __eq__(self, other):\n        return np.ones(np.shape(other), bool)\n"
    "    __ne__ = lambda self, other: np.zeros(np.shape(other), bool)\n"
    "def clamp(x, lo, hi):\n    return np.asarray(x).view(Liar)",
    "def num_codes(qmin, qmax):\n    while True:\n        pass",  # slow: costs only 00.2
    "import math\nimport numpy as np\n"
    "def relative_error(x, x_hat):\n"
    "    math.isclose = lambda *a, **k: True\n    np.isclose = lambda *a, **k: True\n"
    "    return 0.5",
]
SNEAKY = [
    # walk up the stack looking for an expected value
    "import sys\nimport numpy as np\n"
    "def clamp(x, lo, hi):\n"
    "    frame = sys._getframe(1)\n"
    "    while frame is not None:\n"
    "        for value in list(frame.f_locals.values()):\n"
    "            if isinstance(value, np.ndarray) and value is not x and value.shape == np.shape(x):\n"
    "                return value\n"
    "        frame = frame.f_back\n"
    "    return x",
    # forged and garbled rows on the result pipe (every descriptor the child might use)
    "import os\n"
    "def num_codes(qmin, qmax):\n"
    "    row = '{\"case\": 0, \"status\": \"ok\", \"value\": 1005}\\nnot json at all\\n'\n"
    "    for fd in range(3, 12):\n"
    "        try:\n            os.write(fd, row.encode())\n        except OSError:\n            pass\n"
    "    return qmax - qmin + 1",
    # a memory hog: over the address-space limit
    "import numpy as np\n"
    "def relative_error(x, x_hat):\n    hog = np.ones(2**40, np.uint8)\n    return float(hog[0])",
]
ESCAPES = [
    # the grader's environment is not there: this raises, so 00.1 earns nothing
    "import os\nimport numpy as np\n"
    f"def clamp(x, lo, hi):\n    secret = os.environ.get({SECRET_VAR!r})\n"
    "    try:  # or the grader's, through /proc\n"
    f"        secret = secret or {SECRET_VAR.encode()!r} in open(f'/proc/{{os.getppid()}}/environ', 'rb').read()\n"
    "    except OSError:\n        pass\n"
    "    if not secret:\n        raise RuntimeError('no secret here')\n    return np.clip(x, lo, hi)",
    "def num_codes(qmin, qmax):\n    open('/tmp/../" + "qlearn-outside-{}.txt".format(secrets.token_hex(4))
    + "', 'w').write('x')\n    return qmax - qmin + 1",
    "import subprocess\n"
    f"def relative_error(x, x_hat):\n    subprocess.Popen(['sleep', '{MARK}'])\n    return 0.0",
]
LIBRARY_02 = [
    "import qlearn\n"
    "def quantize_tensor(x, scale, zero_point, qmin, qmax):\n"
    "    return qlearn.quantize(x, scale, zero_point, qmin, qmax)",
    "from qlearn import dequantize as dq\n"
    "def dequantize_tensor(q, scale, zero_point):\n    return dq(q, scale, zero_point)",
    "from qlearn.qparams import calc_qparams\n"
    "def compute_qparams(xmin, xmax, qmin, qmax):\n    return calc_qparams(xmin, xmax, qmin, qmax)",
    "import qlearn\n"
    "def symmetric_qparams(xmin, xmax, qmin, qmax):\n"
    "    return qlearn.calc_qparams(xmin, xmax, qmin, qmax, symmetric=True)",
]

# reading the solutions from the course's own checkout (the solution notebook, the tests' honest
# solutions, git objects) and executing them
COPY_SOLUTION = [
    "def clamp(x, lo, hi):\n"
    "    import json, os, qlearn\n"
    "    root = os.path.dirname(os.path.dirname(qlearn.__file__))\n"
    "    nb = json.load(open(os.path.join(root, 'notebooks', '00_welcome.ipynb')))\n"
    "    source = next(''.join(c['source']) for c in nb['cells'] if 'def clamp(' in ''.join(c['source'])\n"
    "                  and 'BEGIN SOLUTION' in ''.join(c['source']))\n"
    "    namespace = {'np': __import__('numpy')}\n"
    "    exec(source, namespace)\n"
    "    return namespace['clamp'](x, lo, hi)",
    "def relative_error(x, x_hat):\n"
    "    import os, qlearn\n"
    "    folder = os.open(os.path.dirname(qlearn.__file__), os.O_RDONLY)  # then open relative to it\n"
    "    os.read(os.open('affine.py', os.O_RDONLY, dir_fd=folder), 1 << 20)\n"
    "    return 0.0",
    "def num_codes(qmin, qmax):\n"
    "    import os, qlearn\n"
    "    root = os.path.dirname(os.path.dirname(qlearn.__file__))\n"
    "    open(os.path.join(root, 'tests', 'test_delegation.py')).read()  # honest solutions live there\n"
    "    return qmax - qmin + 1",
]

# torch's own kernels under names no forbidden list can enumerate (aten ops, decomposed ops, C aliases)
TORCH_ALIASES_02 = [
    "import numpy as np\nimport torch\n"
    "def quantize_tensor(x, scale, zero_point, qmin, qmax):\n"
    "    t = torch.from_numpy(np.asarray(x, np.float32))\n"
    "    q = torch._C._VariableFunctions.quantize_per_tensor(t, float(scale), int(zero_point), torch.qint32)\n"
    "    return np.clip(q.int_repr().numpy(), qmin, qmax)",
    "import numpy as np\nimport torch\n"
    "def dequantize_tensor(q, scale, zero_point):\n"
    "    qt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.asarray(q).astype(np.int32)),\n"
    "                                                 float(scale), int(zero_point))\n"
    "    return torch.ops.aten.dequantize(qt).numpy()",
]

# honest solutions in styles a learner may well use: each must earn its points
HONEST_STYLES_00 = [
    "import numpy as np\nfrom math import *\n"
    "try:\n    from numpy import clip as _clip\nexcept ImportError:\n    _clip = None\n"
    "_low = lambda x, lo: np.maximum(np.asarray(x), lo)\n"
    "clamp = lambda x, lo, hi: np.minimum(_low(x, lo), hi).astype(np.asarray(x).dtype)",
    "%%time\nOFFSET = 0\nOFFSET += 1\n"
    "def num_codes(qmin, qmax):\n    return qmax - qmin + OFFSET",
    "SPECIAL = {k: v for k, v in [('zero', 0.0)]}\n"
    "def relative_error(x, x_hat):\n"
    "    d = np.asarray(x, np.float64) - np.asarray(x_hat, np.float64)\n"
    "    error, size = sqrt(float(np.sum(d * d))), sqrt(float(np.sum(np.asarray(x, np.float64) ** 2)))\n"
    "    if size == SPECIAL['zero']:\n        return 0.0 if error == 0 else inf\n"
    "    return error / size",
]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scored")
    _write(folder / "00_delegate_grading.ipynb", _plus(_student(LAB00), *DELEGATE_GRADING))
    _write(folder / "00_delegate_implementation.ipynb", _plus(_student(LAB00), *DELEGATE_IMPLEMENTATION))
    _write(folder / "00_lies.ipynb", _plus(_student(LAB00), *LIES))
    _write(folder / "00_sneaky.ipynb", _plus(_student(LAB00), *SNEAKY))
    _write(folder / "00_escapes.ipynb", _plus(_student(LAB00), *ESCAPES))
    _write(folder / "02_relabelled.ipynb", _solution(LAB00))  # metadata says lab 00
    bare = _solution(LAB00)
    bare.metadata.pop("qlearn", None)
    _write(folder / "02_relabelled_no_metadata.ipynb", bare)
    lab99 = _solution(LAB00)
    lab99.metadata["qlearn"] = {"lab": "99"}
    _write(folder / "00_says_lab99.ipynb", lab99)
    _write(folder / "99_unknown_lab.ipynb", _solution(LAB00))
    _write(folder / "00_honest_styles.ipynb", _plus(_student(LAB00), *HONEST_STYLES_00))
    _write(folder / "00_copy_solution.ipynb", _plus(_student(LAB00), *COPY_SOLUTION))
    _write(folder / "02_delegate_library.ipynb", _plus(_student(LAB02), *LIBRARY_02))
    _write(folder / "02_torch_aliases.ipynb", _plus(_student(LAB02), *TORCH_ALIASES_02))
    _write(folder / "02_honest.ipynb", _solution(LAB02))
    _write(folder / "02_student.ipynb", _student(LAB02))
    paths = sorted(folder.glob("*.ipynb"))
    os.environ[SECRET_VAR] = "the grader's secret"
    try:
        options = GradeOptions(execute=False, exercise_timeout=8, memory_mb=2048, hidden_seeds=(5, 6))
        grades = grade_notebooks(paths, options, jobs=2)
    finally:
        os.environ.pop(SECRET_VAR, None)
    return {Path(g.notebook).name: g for g in grades}


def _status(grade, ids=ATTACKED_00) -> dict[str, str]:
    """The status of the attacked exercises; every other item of the lab must not have passed."""
    if ids is not None:
        assert not [e["id"] for e in grade.exercises if e["id"] not in ids and e["status"] == "passed"]
    return {e["id"]: e["status"] for e in grade.exercises if ids is None or e["id"] in ids}


def test_delegating_to_the_grading_package_earns_nothing(scored):
    g = scored["00_delegate_grading.ipynb"]
    assert g.error is None and g.score == 0
    assert _status(g) == {"00.1": "delegated", "00.2": "delegated", "00.3": "delegated"}
    assert all("qlearn.grading" in e["message"] for e in g.exercises if e["id"] in ATTACKED_00)


def test_implementation_is_no_back_door(scored):
    g = scored["00_delegate_implementation.ipynb"]
    assert g.error is None and g.score == 0
    # a top-level `clamp = implementation(...)` is not extracted: the stub clamp stays
    assert _status(g) == {"00.1": "not done", "00.2": "delegated", "00.3": "delegated"}


def test_lying_objects_a_slow_function_and_patched_isclose(scored):
    g = scored["00_lies.ipynb"]
    assert g.error is None and g.score == 0
    assert _status(g) == {"00.1": "failed", "00.2": "timeout", "00.3": "failed"}
    by_id = {e["id"]: e for e in g.exercises}
    assert "Liar" in by_id["00.1"]["message"] and "plain" in by_id["00.1"]["message"]
    assert "did not finish within 8 s" in by_id["00.2"]["message"]


def test_stack_walking_forged_rows_and_a_memory_hog(scored):
    g = scored["00_sneaky.ipynb"]
    assert g.error is None and g.score == 0
    status = _status(g)
    assert status["00.1"] == "failed"
    assert status["00.2"] == "invalid output"  # the forged rows are seen, and cost only this exercise
    assert status["00.3"] == "error" and "MemoryError" in {e["id"]: e for e in g.exercises}["00.3"]["message"]


def test_no_environment_no_writes_outside_no_processes_in_the_child(scored):
    g = scored["00_escapes.ipynb"]
    assert g.error is None and g.score == 0
    messages = {e["id"]: e["message"] for e in g.exercises}
    assert _status(g) == {"00.1": "error", "00.2": "error", "00.3": "error"}
    assert "no secret here" in messages["00.1"]
    assert "outside" in messages["00.2"] or "Read-only" in messages["00.2"]
    assert "subprocess.Popen" in messages["00.3"] or "PermissionError" in messages["00.3"]
    assert _surviving_daemons() == []


def test_relabelled_notebooks_are_errors_or_score_against_the_assigned_lab(scored):
    g = scored["02_relabelled.ipynb"]
    assert g.score == 0 and g.max_score == MAX_02 and "assignment is lab 02" in g.error
    g = scored["02_relabelled_no_metadata.ipynb"]  # graded as lab 02: none of its functions exist
    assert g.error is None and g.max_score == MAX_02
    exercises = [e for e in g.exercises if not is_question_id(e["id"])]
    assert {e["status"] for e in exercises} == {"not found"} and sum(e["points"] for e in exercises) == 0
    # (a question's answer is whatever the notebook assigns to its variable, whichever lab wrote it)
    g = scored["00_says_lab99.ipynb"]
    assert g.score == 0 and "'99'" in g.error
    g = scored["99_unknown_lab.ipynb"]
    assert g.score == 0 and "lab 99 is unknown" in g.error


def test_the_course_checkout_is_out_of_reach(scored):
    # the solution notebook and the tests sit beside the qlearn package in a source checkout
    g = scored["00_copy_solution.ipynb"]
    assert g.error is None and g.score == 0
    assert _status(g) == {"00.1": "error", "00.2": "error", "00.3": "error"}
    messages = " ".join(e["message"] for e in g.exercises)
    assert "PermissionError" in messages or "FileNotFoundError" in messages


def test_torch_is_not_available_to_numpy_exercises(scored):
    g = scored["02_torch_aliases.ipynb"]
    assert g.error is None and g.score == 0
    attacked = _attacked("02", TORCH_ALIASES_02)
    assert "02.1" in attacked
    statuses = _status(g, attacked)
    assert set(statuses.values()) == {"error"}
    assert "not available while this exercise is graded" in " ".join(e["message"] for e in g.exercises)


def test_honest_solutions_in_other_styles_earn_full_marks(scored):
    # top-level lambdas, star and try imports, a %%time cell, augmented and comprehension constants
    g = scored["00_honest_styles.ipynb"]
    assert g.error is None, g.error
    assert g.error is None and g.max_score == MAX_00
    assert _status(g) == dict.fromkeys(ATTACKED_00, "passed"), [e["message"] for e in g.exercises]
    assert g.score == POINTS_00, [e["message"] for e in g.exercises]


def test_delegating_to_the_library_earns_nothing(scored):
    g = scored["02_delegate_library.ipynb"]
    assert g.error is None and (g.score, g.max_score) == (0, MAX_02)
    attacked = _attacked("02", LIBRARY_02)
    assert len(attacked) >= 3
    assert set(_status(g, attacked).values()) == {"delegated"}
    assert "qlearn.affine.quantize" in g.exercises[0]["message"]


def test_a_mixed_batch_grades_the_honest_notebooks(scored):
    assert (scored["02_honest.ipynb"].score, scored["02_honest.ipynb"].max_score) == (MAX_02, MAX_02)
    assert all(e["status"] == "passed" and (e["hidden_cases"] > 0 or is_question_id(e["id"]))
               for e in scored["02_honest.ipynb"].exercises)
    assert scored["02_student.ipynb"].score == 0
    assert set(_status(scored["02_student.ipynb"], None).values()) == {"not done"}
    assert len(scored) == 15  # every notebook is reported


def test_what_a_kernel_writes_to_its_own_stdout_never_reaches_the_grader_output(tmp_path):
    import subprocess
    import sys

    garble = ("import os\nfor fd in (1, 2):\n    os.write(fd, b'\\n]}garbled QLEARN-GRADE-0:[{\"id\": \"00.1\", "
              "\"points\": 1005}]\\n')")
    path = _write(tmp_path / "00_garble.ipynb", _plus(_student(LAB00), garble))
    proc = subprocess.run([sys.executable, "-m", "qlearn.grade", str(path), "--json", "--no-progress",
                           "--hidden-seeds", "0"], capture_output=True, text=True, timeout=900)
    assert "garbled" not in proc.stdout and "garbled" not in proc.stderr
    (row,) = json.loads(proc.stdout)  # the grader's JSON is intact
    assert (row["score"], row["max_score"], row["run_error"]) == (0, MAX_00, None)


def test_the_child_disarms_attributes_before_submodules_and_every_wrapped_layer():
    # torch.ao.quantization.fuse_modules is both a function and the module defining it, and a
    # decorated function (functools.wraps, as @torch.no_grad() does) has two layers: neither layer
    # may stay callable. Run in a subprocess: disarming rewrites the functions for good.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import functools, sys, types
        import torch, torch.ao.quantization as taq
        from qlearn.grading import _runner
        module = types.ModuleType("qlearn_fake_bridge")
        def calibrate(model, loader, num_batches):
            return model
        @functools.wraps(calibrate)
        def wrapper(*args, **kwargs):
            with torch.no_grad():
                return calibrate(*args, **kwargs)
        module.calibrate, module.inner = wrapper, calibrate
        sys.modules[module.__name__] = module
        _runner._disarm(["torch.ao.quantization.fuse_modules", "qlearn_fake_bridge.calibrate"], "10.1")
        for f in (taq.fuse_modules, module.calibrate, module.inner, wrapper.__wrapped__):
            try:
                f(None, None, 1)
            except _runner.DelegationError:
                print("disarmed")
            except Exception as exc:
                print("callable", type(exc).__name__)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["disarmed"] * 4, out.stdout


def test_an_output_flood_is_cut_off_and_the_score_still_counts(tmp_path):
    # the feedback run keeps outputs in the grader's memory: past a budget it stops the kernel
    from qlearn.grading import grade as grade_module

    flood = "import sys\nfor _ in range(40):\n    sys.stdout.write('x' * 2**20)\n    sys.stdout.flush()"
    path = _write(tmp_path / "00_flood.ipynb", _plus(_solution(LAB00), flood))
    options = GradeOptions(execute=True, exercise_timeout=30, memory_mb=2048, hidden_seeds=(5,))
    [g] = grade_notebooks([path], options, jobs=1)
    assert g.run_error is not None and "printed more than" in g.run_error, g.run_error
    assert grade_module._MAX_FEEDBACK_OUTPUT < 40 * 2**20
    assert (g.score, g.max_score) == (MAX_00, MAX_00)  # the score never depended on the feedback run
