"""A real browser for the labs: JupyterLab on a loopback port, driven by Playwright in headless Chromium.

The fixtures here

- find Chromium or Chrome (``$QLEARN_CHROMIUM``, ``/usr/bin/chromium``, or ``chromium``,
  ``chromium-browser``, ``google-chrome``, ``google-chrome-stable``, ``chrome`` in ``PATH``, or
  Chrome's usual install location on macOS and Windows) and skip the stage with the reason when
  there is none, or when Playwright is not installed. With ``QLEARN_REQUIRE_BROWSER=1`` (set by
  ``.ci/run``) a missing browser fails instead of skipping;
- start ``jupyter lab`` on a temporary folder, on a free port of 127.0.0.1 with a fixed token, with
  its own settings, workspaces, config, data and runtime folders (the learner's own JupyterLab
  set-up is never read or written), with windowing off (every cell is rendered), and with news,
  update checks and the PyPI extension manager off (nothing is fetched from the network); each
  test gets its own fresh copy of the *student* notebooks there;
- launch the browser once per session (Playwright drives the installed binary: no download) and
  give each test a fresh page;
- on a failed test, save a screenshot into a temporary folder and name its path in the report.

The :class:`Lab` helper holds the few interactions the tests need (open a notebook, run all cells,
wait for the kernel, read a cell's output, type into a cell). It reads outputs with ``textContent``,
which JupyterLab fills even for cells it has not painted. Used by ``tests/browser/test_lab00.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDENT_NOTEBOOKS = ROOT / "notebooks" / "student"
TOKEN = "qlearn-browser-test"  # a fixed token: the server listens on 127.0.0.1 only
SERVER_START_TIMEOUT = 90.0  # seconds; JupyterLab starts in ~5 s when the machine is quiet
CHROMIUM_ARGS = [
    "--no-sandbox",  # needed when running as root (CI containers)
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # the network is closed: without these, Chromium floods refused connections to Google services
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-extensions",
]
INSTALL_LOCATIONS = (
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    r"C:\Program Files (x86)\Google\Chrome\Application\chrome.exe",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in IPython tracebacks
INSTALL_HINT = ("install it with `apt-get install chromium` (Debian/Ubuntu), or install Chrome, or set "
                "QLEARN_CHROMIUM to the browser's executable")

#: JupyterLab user settings for the test server (one file per plugin, as JupyterLab stores them).
LAB_SETTINGS = {
    # Render every cell: the default windowing skips painting off-screen cells.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # No news feed and no update check: nothing may be fetched from the network.
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    # No extension manager (it would query PyPI).
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}

#: Server extensions the labs do not need, switched off in the test server to start it faster (the
#: instructor's nbgrader tools, when installed). Config in the server's own config folder.
SERVER_CONFIG = {"ServerApp": {"jpserver_extensions": {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.assignment_list": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.validate_assignment": False,
}}}
#: ... and nbgrader's JupyterLab extension, whose server side is off.
PAGE_CONFIG = {"disabledExtensions": {"@jupyter/nbgrader": True}}


def _missing(reason: str) -> None:
    """Skip the browser stage, or fail it where CI requires it (QLEARN_REQUIRE_BROWSER=1)."""
    if os.environ.get("QLEARN_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"the browser stage is required (QLEARN_REQUIRE_BROWSER is set) but {reason}",
                    pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable, or None."""
    explicit = os.environ.get("QLEARN_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    for path in INSTALL_LOCATIONS:  # installed, but usually not in PATH (macOS, Windows)
        if Path(path).is_file():
            return path
    return None


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    explicit = os.environ.get("QLEARN_CHROMIUM")
    path = find_chromium()
    if path is None:
        if explicit:
            _missing(f"QLEARN_CHROMIUM={explicit!r} is not a file: set it to the Chromium/Chrome "
                     f"executable, or unset it to search PATH")
        _missing(f"no Chromium/Chrome found: {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed: install it with `.venv/bin/python -m pip install "
                 "playwright` (no `playwright install` needed: the system Chromium is used)")
    with sync_playwright() as api:
        yield api


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """A running ``jupyter lab`` serving a temporary copy of the student notebooks."""

    def __init__(self, root: Path, port: int, process: subprocess.Popen, log: Path):
        self.root, self.port, self.process, self.log = root, port, process, log
        self.base_url = f"http://127.0.0.1:{port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={TOKEN}"

    def api(self, path: str):
        with urllib.request.urlopen(self.url(f"api/{path}"), timeout=10) as response:
            return json.loads(response.read())

    def wait_ready(self) -> None:
        """Wait until the server answers (it starts while the browser launches); fail with its log."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"jupyter lab exited with code {self.process.returncode}:\n{self.log_tail()}",
                            pytrace=False)
            try:
                self.api("status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer on port {self.port} within "
                                f"{SERVER_START_TIMEOUT:.0f} s:\n{self.log_tail()}", pytrace=False)
                time.sleep(0.25)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def lab_server(chromium_executable, playwright_api, tmp_path_factory):
    if not STUDENT_NOTEBOOKS.is_dir() or not any(STUDENT_NOTEBOOKS.glob("*.ipynb")):
        pytest.fail(f"no student notebooks in {STUDENT_NOTEBOOKS}: build them with "
                    f"`python -m qlearn.grading.student`", pytrace=False)
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "notebooks"
    root.mkdir()
    settings = base / "settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))
    for name in ("config", "data", "runtime", "workspaces"):
        (base / name).mkdir()
    (base / "config" / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG, indent=2))
    (base / "config" / "labconfig").mkdir()
    (base / "config" / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG, indent=2))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
    }
    port = _free_port()
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",  # the default "pypi" manager queries PyPI
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",  # lets the tests read the notebook model (window.jupyterapp)
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.allow_root=True",  # CI containers run as root; the server is on loopback only
    ]
    log = base / "jupyterlab.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = LabServer(root, port, process, log)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def browser(playwright_api, chromium_executable):
    browser = playwright_api.chromium.launch(executable_path=chromium_executable, headless=True,
                                             args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def page(browser):
    """One page per test module; ``page.outside`` lists every request made to a host but 127.0.0.1.

    The tests of a module share it (and the notebook they open, and its kernel): JupyterLab's page
    and a kernel each take 10-20 s to start on a busy 2-core machine.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    outside: list[str] = []
    context.on("request", lambda request: None if request.url.startswith(
        ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:", "about:")) else outside.append(request.url))
    page = context.new_page()
    page.outside = outside
    yield page
    context.close()


@pytest.fixture(scope="module")
def lab(lab_server, page, request):
    """A :class:`Lab` for a test module, with its own pristine copy of the student notebooks.

    The kernels are shut down after the module. (``lab_server`` comes first: the server starts
    while the browser launches.)
    """
    lab_server.wait_ready()
    folder = lab_server.root / request.module.__name__.rsplit(".", 1)[-1]
    folder.mkdir()
    for notebook in STUDENT_NOTEBOOKS.glob("*.ipynb"):
        shutil.copy2(notebook, folder / notebook.name)
    helper = Lab(page, lab_server, folder)
    yield helper
    helper.shutdown_kernels()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    page = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if page is None:
        return
    folder = Path(tempfile.mkdtemp(prefix="qlearn-browser-"))
    path = folder / f"{item.name}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
        report.sections.append(("browser screenshot", f"saved to {path}"))
        print(f"\nbrowser screenshot of the failure: {path}", file=sys.stderr)
    except Exception as exc:  # the page may be gone; the failure itself matters more
        report.sections.append(("browser screenshot", f"could not be taken: {exc}"))
    server = item.funcargs.get("lab_server")
    if server is not None:
        report.sections.append(("jupyter lab log (last lines)", server.log_tail()))


# --- page helpers -------------------------------------------------------------------------------

# JavaScript run in the page; ``window.jupyterapp`` exists because of expose_app_in_browser.
_JS_KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && !w.sessionContext.isRestarting;
}"""
# Every code cell has run (or one raised an error, which stops "Run All"), no cell is queued, and
# the kernel is idle.
_JS_ALL_RUN = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  let errored = false, pending = false;
  for (const cell of w.content.widgets) {
    if (cell.model.type !== 'code') continue;
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    if (prompt && prompt.textContent.includes('*')) return false;
    if (cell.model.executionCount === null && cell.model.sharedModel.getSource().trim()) pending = true;
    for (let i = 0; i < cell.model.outputs.length; i++)
      if (cell.model.outputs.get(i).type === 'error') errored = true;
  }
  return errored || !pending;
}"""
# [index, first line of source, error name + value, traceback tail] of each cell with an error output
_JS_ERRORS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const found = [];
  w.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    for (let i = 0; i < cell.model.outputs.length; i++) {
      const out = cell.model.outputs.get(i).toJSON();
      if (out.output_type === 'error')
        found.push([index, cell.model.sharedModel.getSource().split('\\n')[0],
                    out.ename + ': ' + out.evalue, (out.traceback || []).slice(-3).join('\\n')]);
    }
  });
  return found;
}"""
_JS_NOT_RUN = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const found = [];
  w.content.widgets.forEach((cell, index) => {
    if (cell.model.type === 'code' && cell.model.executionCount === null
        && cell.model.sharedModel.getSource().trim()) found.push(index);
  });
  return found;
}"""
_JS_SOURCES = """() => window.jupyterapp.shell.currentWidget.content.widgets.map(
  cell => [cell.model.type, cell.model.sharedModel.getSource()])"""


class Lab:
    """The interactions the browser tests need, on one page of JupyterLab."""

    #: seconds to wait for "Run All" on a small lab (lab 00 takes ~10 s on a loaded 2-core machine)
    RUN_ALL_TIMEOUT = 120.0

    def __init__(self, page, server: LabServer, folder: Path):
        self.page, self.server, self.folder = page, server, folder

    def open(self, notebook: str) -> None:
        """Open ``notebook`` (a student notebook's file name) and wait for an idle kernel.

        If it is already the open notebook (an earlier test of the module opened it), keep it, with
        its kernel and whatever the earlier test did to it.
        """
        if not (self.folder / notebook).is_file():
            raise FileNotFoundError(f"notebook={notebook!r} is not among the student notebooks copied to "
                                    f"{self.folder}; pick one of notebooks/student/*.ipynb")
        notebook = f"{self.folder.name}/{notebook}"
        current = self.page.evaluate("""() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                                                return w && w.context ? w.context.path : null; }""")
        if current != notebook:
            self.page.goto(self.server.url(f"lab/tree/{notebook}?reset"))
        self.wait_until(
            f"""() => {{ const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                  return !!w && !!w.context && w.context.path === {json.dumps(notebook)}
                         && w.content && w.content.widgets.length > 0; }}""",
            f"JupyterLab did not open {notebook}", timeout=60)
        self.wait_kernel_idle()

    def wait_until(self, expression: str, message: str, *, arg=None, timeout: float = 30.0) -> None:
        """Wait until the JavaScript ``expression`` (a function of ``arg``) is true, else fail with ``message``."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        try:
            self.page.wait_for_function(expression, arg=arg, timeout=timeout * 1000, polling=200)
        except PlaywrightTimeoutError:
            raise AssertionError(f"{message} (waited {timeout:.0f} s)") from None

    def wait_kernel_idle(self, timeout: float = 60.0) -> None:
        self.wait_until(_JS_KERNEL_IDLE, "the notebook's kernel did not start or did not become idle",
                        timeout=timeout)

    def run_all_from_menu(self) -> float:
        """Run > Run All Cells, as a learner does; wait until every cell ran. Returns seconds taken."""
        started = time.monotonic()
        self.page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text="Run").first.click()
        self.page.locator(".lm-Menu-item:visible", has_text="Run All Cells").first.click()
        # The kernel may still report idle before the first execute request lands: give it a moment
        # by waiting for the first code cell to leave its empty prompt, then for everything to finish.
        self.wait_until(
            """() => window.jupyterapp.shell.currentWidget.content.widgets.some(
                 c => c.model.type === 'code' && (c.model.executionCount !== null ||
                      (c.node.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.includes('*')))""",
            "Run > Run All Cells started no cell")
        try:
            self.wait_until(_JS_ALL_RUN, "Run All did not finish", timeout=self.RUN_ALL_TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; cells not run yet: {self.not_run()}") from None
        return time.monotonic() - started

    def errors(self) -> list[tuple[int, str, str, str]]:
        """(cell index, first source line, "Name: value", traceback tail) of every error output."""
        return [(index, line, error, _ANSI.sub("", tail))
                for index, line, error, tail in self.page.evaluate(_JS_ERRORS)]

    def not_run(self) -> list[int]:
        return self.page.evaluate(_JS_NOT_RUN)

    def sources(self) -> list[tuple[str, str]]:
        return [tuple(item) for item in self.page.evaluate(_JS_SOURCES)]

    def cell_index(self, predicate, what: str) -> int:
        """The index of the first cell whose (type, source) satisfies ``predicate``."""
        for index, (kind, source) in enumerate(self.sources()):
            if predicate(kind, source):
                return index
        raise AssertionError(f"no cell in the open notebook is {what}")

    def cell(self, index: int):
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def output_text(self, index: int) -> str:
        """The text of a cell's outputs (``textContent``: filled even where JupyterLab has not painted)."""
        return self.cell(index).locator(".jp-OutputArea").first.evaluate("node => node.textContent")

    def execution_count(self, index: int):
        return self.page.evaluate(
            f"() => window.jupyterapp.shell.currentWidget.content.widgets[{index}].model.executionCount")

    def replace_source(self, index: int, text: str) -> None:
        """Type ``text`` into a code cell's editor in place of its content, as a learner would."""
        editor = self.cell(index).locator(".cm-content").first
        editor.scroll_into_view_if_needed()
        editor.click()
        self.page.keyboard.press("ControlOrMeta+a")
        self.page.keyboard.press("Delete")
        # insert_text sends the text as one input (like a paste): no auto-indent or auto-closed brackets
        self.page.keyboard.insert_text(text)
        typed = self.page.evaluate(
            f"() => window.jupyterapp.shell.currentWidget.content.widgets[{index}].model.sharedModel.getSource()")
        assert typed == text, f"the editor of cell {index} holds {typed!r} after typing {text!r}"

    def run_cell(self, index: int, timeout: float = 60.0) -> str:
        """Select cell ``index``, press Shift+Enter and wait for it to finish; return its output text."""
        before = self.execution_count(index)
        editor = self.cell(index).locator(".cm-content").first
        editor.scroll_into_view_if_needed()
        editor.click()
        self.page.keyboard.press("Shift+Enter")
        self.wait_until(
            f"""() => {{ const w = window.jupyterapp.shell.currentWidget;
                  const c = w.content.widgets[{index}].model;
                  return c.executionCount !== null && c.executionCount !== {json.dumps(before)}
                         && w.sessionContext.session.kernel.status === 'idle'; }}""",
            f"cell {index} did not finish running after Shift+Enter", timeout=timeout)
        return self.output_text(index)

    def assert_offline(self) -> None:
        """JupyterLab fetched nothing from the network (no news, no update check, no CDN)."""
        assert not self.page.outside, f"the page requested hosts other than 127.0.0.1: {self.page.outside}"

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of the server, so that tests do not share state or CPU."""
        for kernel in self.server.api("kernels"):
            request = urllib.request.Request(self.server.url(f"api/kernels/{kernel['id']}"), method="DELETE")
            try:
                urllib.request.urlopen(request, timeout=15).close()
            except urllib.error.URLError:
                pass
