"""The widgets in a real browser: JupyterLab on localhost, driven in headless Chromium by
Playwright. Opens ``widgets_ui.ipynb``, runs all cells from the Run menu, waits for the slider,
moves it with the arrow keys and with a typed value, and checks that the printed line follows,
with the numbers the plain function gives for that alpha. Screenshots go to ``reports/ui/``.

Runs only under ``make ui-test`` (which installs Chromium and Playwright and sets PTLIB_UI=1);
skipped everywhere else, ``make test`` included. Environment: PTLIB_CHROMIUM (default
/usr/bin/chromium), PTLIB_UI_REPORTS (default <repo>/reports/ui), PTLIB_UI_TIMEOUT_S (the wait for
the kernel to run the notebook and render the slider, default 180).
"""

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

if os.environ.get("PTLIB_UI") != "1":
    pytest.skip("browser test: run `make ui-test` (sets PTLIB_UI=1)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402  (only under make ui-test)

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "widgets_ui.ipynb"
REPORTS = Path(os.environ.get("PTLIB_UI_REPORTS", HERE.parents[1] / "reports" / "ui"))
CHROMIUM = os.environ.get("PTLIB_CHROMIUM", "/usr/bin/chromium")
RUN_TIMEOUT_MS = 1000 * int(os.environ.get("PTLIB_UI_TIMEOUT_S", "180"))
STEP_TIMEOUT_MS = 30_000  # one slider move: the kernel reruns a tiny model (well under a second)
# The flags that work on these machines: without the background-networking ones Chromium keeps
# trying hosts this closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
LINE = re.compile(r"alpha=(?P<alpha>\S+)\s+NLL=(?P<nll>\S+)\s+EM=(?P<p1>\S+)\s+"
                  r"nearest tokens \(cosine\): (?P<nearest>.*)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, token: str, proc: subprocess.Popen, log: Path, timeout_s: float):
    request = urllib.request.Request(f"{url}/api/status",
                                     headers={"Authorization": f"token {token}"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer in {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the server shuts its kernels down), then SIGKILL
    to whatever of the group is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def jupyter_lab():
    """JupyterLab on a free localhost port, serving a temporary copy of the notebook (autosave
    never touches the committed one), with its own config, data, runtime, settings and workspace
    folders; stopped, with its kernels, whatever the test does."""
    tmp = Path(tempfile.mkdtemp(prefix="ptlib-ui-"))
    root = tmp / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No news or update toasts over the notebook (they would also try the network).
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               IPYTHONDIR=str(tmp / "ipython"))
    port, token = free_port(), os.urandom(16).hex()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={tmp / 'settings'}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}", "--ServerApp.terminals_enabled=False"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp / "jupyterlab.log"
    with log.open("w") as out:
        # A new session: the server and its kernels form one process group, ended together.
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(url, token, proc, log, timeout_s=120)
        yield {"url": url, "token": token, "notebook": NOTEBOOK.name}
    finally:
        stop(proc)
        REPORTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, REPORTS / "jupyterlab.log")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def page(jupyter_lab):
    """A page in headless Debian Chromium with a fresh profile, closed after the test."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make ui-test` installs Debian's chromium")
    profile = Path(tempfile.mkdtemp(prefix="ptlib-ui-chromium-"))
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 1200})
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@functools.cache
def notebook_setup() -> dict:
    """The names the notebook's setup cell defines (model, template, facts, tokens), built here."""
    scope: dict = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if "setup" in cell["metadata"].get("tags", []):
            exec("".join(cell["source"]), scope)  # our own notebook's setup cell
    return scope


def expected_line(alpha: float) -> str:
    """What the widget should print for ``alpha``: the plain function, with the notebook's
    setup, in this process (no browser, no kernel)."""
    scope = notebook_setup()
    widgets = scope["widgets"]
    point = widgets.slot_between_tokens(scope["lm"], scope["template"], scope["facts"],
                                        scope["slot_ids"], 0, scope["token_a"], scope["token_b"],
                                        alpha)
    return widgets.describe_point(point)


def assert_same_point(shown: str, expected: str) -> None:
    got, want = LINE.search(shown), LINE.fullmatch(expected)
    assert got, f"no result line in the widget output: {shown!r}"
    assert (got["alpha"], got["p1"], got["nearest"].strip()) == (
        want["alpha"], want["p1"], want["nearest"].strip()), f"{shown!r} != {expected!r}"
    # NLL printed to 3 decimals; the kernel and this process run the same code on the same CPU.
    assert abs(float(got["nll"]) - float(want["nll"])) <= 2e-3, f"{shown!r} != {expected!r}"


def test_slot_between_tokens_slider(jupyter_lab, page):
    REPORTS.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.monotonic()

    def shot(name: str, cell=None) -> None:
        """The page, and a close-up of ``cell`` when given."""
        page.screenshot(path=str(REPORTS / f"{name}.png"))
        if cell is not None:
            cell.screenshot(path=str(REPORTS / f"{name}-cell.png"))

    def mark(name: str) -> None:
        timings[name] = round(time.monotonic() - start, 2)

    try:
        lab = jupyter_lab
        page.goto(f"{lab['url']}/lab/tree/{lab['notebook']}?reset&token={lab['token']}")
        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        expect(notebook).to_be_visible(timeout=60_000)
        # The status bar says "| Idle" once the kernel is up. (The toolbar's execution indicator
        # reads idle before the kernel connects, and a Run All sent then does nothing.)
        expect(page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\|\s*Idle\b"))
               ).to_have_count(1, timeout=RUN_TIMEOUT_MS)
        mark("notebook_open_kernel_idle_s")

        # Run -> Run All Cells, as a learner would; again if no cell started (a Run All that
        # arrives while the kernel connection settles is dropped).
        first_prompt = notebook.locator(".jp-CodeCell .jp-InputArea-prompt").first
        for attempt in range(3):
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")
                         ).click()
            try:
                expect(first_prompt).to_have_text(re.compile(r"\[(\*|\d+)\]"), timeout=20_000)
                break
            except AssertionError:
                if attempt == 2:
                    raise
        timings["run_all_attempts"] = attempt + 1

        interact = notebook.locator(".widget-interact")
        cell = notebook.locator(".jp-CodeCell", has=page.locator(".widget-interact"))
        handle = interact.locator(".widget-slider .noUi-handle")
        readout = interact.locator(".widget-readout")
        output = interact.locator(".widget-output")
        expect(handle).to_be_visible(timeout=RUN_TIMEOUT_MS)
        expect(output).to_contain_text(re.compile(r"alpha=0\.50\b"), timeout=STEP_TIMEOUT_MS)
        mark("slider_rendered_s")
        assert "Error displaying widget" not in notebook.inner_text()
        assert "Traceback" not in notebook.inner_text()
        cell.scroll_into_view_if_needed()
        assert_same_point(output.inner_text(), expected_line(0.5))
        shot("01-rendered", cell)

        # Keyboard: the focused handle moves one step (0.05) per arrow key.
        handle.focus()
        page.keyboard.press("ArrowRight")
        expect(output).to_contain_text(re.compile(r"alpha=0\.55\b"), timeout=STEP_TIMEOUT_MS)
        expect(readout).to_have_text("0.55")
        assert_same_point(output.inner_text(), expected_line(0.55))
        shot("02-arrow-right", cell)
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        expect(output).to_contain_text(re.compile(r"alpha=0\.45\b"), timeout=STEP_TIMEOUT_MS)
        expect(readout).to_have_text("0.45")
        assert_same_point(output.inner_text(), expected_line(0.45))
        mark("keys_done_s")

        # A typed value in the readout.
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("0.8")
        page.keyboard.press("Enter")
        expect(output).to_contain_text(re.compile(r"alpha=0\.80\b"), timeout=STEP_TIMEOUT_MS)
        expect(readout).to_have_text("0.80")
        assert_same_point(output.inner_text(), expected_line(0.8))
        assert output.inner_text().count("alpha=") == 1, "the widget should show one line"
        shot("03-typed-0.8", cell)
        mark("typed_done_s")
    except BaseException:
        try:
            shot("failure")
        except Exception as err:  # the page may be gone; keep the first error
            print(f"no failure screenshot: {err}")
        raise
    finally:
        (REPORTS / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
