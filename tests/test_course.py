"""The course runner (ptlib.course) and the report recorder, without executing the real course:
a tiny notebook is executed the way the course executes its notebooks (papermill), and the real
notebooks' parameters and fast-mode cells are read, not run."""

import ast
import json
import tempfile
from pathlib import Path

import matplotlib
import nbformat
import papermill
import pytest

from ptlib.course import notebook as runtime
from ptlib.course import runner as course
from ptlib.course.report import REPORTS_ENV, Recorder
from ptlib.errors import ConfigError
from ptlib.progress import PROGRESS_ENV

matplotlib.use("Agg")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def small_notebook(path, outputs=True):
    """A two-cell notebook with a tagged parameters cell, written to ``path``."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    parameters = nbformat.v4.new_code_cell("steps = 3  # AdamW steps\nfast = None")
    parameters.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell("print(steps)")
    if outputs:
        body.outputs = [nbformat.v4.new_output("stream", name="stdout", text="3\n")]
        body.execution_count = 2
        body.metadata["papermill"] = {"duration": 0.1}
    notebook.cells = [nbformat.v4.new_markdown_cell("# title"), parameters, body]
    nbformat.write(notebook, path)
    return path


def test_the_course_notebooks_are_found_in_order():
    names = [path.name for path in course.course_notebooks(NOTEBOOKS)]
    assert names == sorted(names) and len(names) >= 8
    assert names[0].startswith("00_") and names[-1].startswith("07_")


def test_an_unknown_parameter_is_an_error(tmp_path):
    notebook = small_notebook(tmp_path / "00_demo.ipynb")
    course.check_parameters(notebook, {"steps": 5})
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['stpes'\].*'steps'"):
        course.check_parameters(notebook, {"stpes": 5})


def test_write_back_copies_outputs_and_refuses_changed_sources(tmp_path):
    executed = small_notebook(tmp_path / "ran.ipynb")
    ran = nbformat.read(executed, as_version=4)
    ran.metadata["papermill"] = {"input_path": str(tmp_path / "source.ipynb"), "duration": 1.0}
    ran.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    nbformat.write(ran, executed)
    source = small_notebook(tmp_path / "source.ipynb", outputs=False)
    course.write_back(executed, source)
    written = nbformat.read(source, as_version=4)
    cell = written.cells[2]
    assert cell.outputs[0].text == "3\n" and cell.execution_count == 2
    assert "papermill" not in cell.metadata  # cell metadata stay the source's: no timings
    assert written.metadata["language_info"]["version"] == "3.11.7"  # the run's metadata ...
    assert "papermill" not in written.metadata  # ... less papermill's record

    edited = nbformat.read(source, as_version=4)
    edited.cells[2].source = "print(steps * 2)"
    nbformat.write(edited, source)
    with pytest.raises(ConfigError, match="changed since it was executed"):
        course.write_back(executed, source)


def test_index_links_each_notebook_with_its_metrics_and_figures(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv(REPORTS_ENV, str(tmp_path))
    recorder = Recorder("00_demo")
    fig, ax = plt.subplots()
    ax.set_title("A curve")
    recorder.figure(fig, "curve")
    plt.close(fig)
    recorder.record(exact_match=0.25, task="capital_of")
    saved = json.loads(recorder.save().read_text())
    assert saved == {"notebook": "00_demo", "metrics": {"exact_match": 0.25, "task": "capital_of"},
                     "figures": ["00_demo-curve.png"],
                     "figure_titles": {"00_demo-curve.png": "A curve"}}
    assert (tmp_path / "figures" / "00_demo-curve.png").stat().st_size > 0

    page = course.write_index(tmp_path, {"00_demo": 12.0, "01_missing": 3.0}, fast=True).read_text()
    assert '<a href="00_demo.html">00_demo</a>' in page and "ran in 12 s" in page
    assert "<td>exact_match</td><td>0.250</td>" in page
    assert 'src="figures/00_demo-curve.png"' in page
    assert '<a href="01_missing.html">' in page  # a notebook that recorded nothing still appears
    assert "fast mode" in page


def test_index_shows_figures_at_full_size_and_warns_in_fast_mode(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "05_demo.json").write_text(json.dumps(
        {"metrics": {}, "figures": ["05_demo-coupling.png"],
         "figure_titles": {"05_demo-coupling.png": "Which outputs depend on which inputs"}}))
    fast_page = course.write_index(tmp_path, {"05_demo": 1.0}, fast=True).read_text()
    assert 'width="520"' not in fast_page  # no forced width: natural size up to the page width
    assert '<a href="figures/05_demo-coupling.png"' in fast_page  # click-through to full size
    assert "Which outputs depend on which inputs" in fast_page
    assert "check the pipeline, not the results" in fast_page
    full_page = course.write_index(tmp_path, {"05_demo": 1.0}, fast=False).read_text()
    assert "check the pipeline, not the results" not in full_page and "full mode" in full_page


def test_write_back_is_refused_with_overrides_or_in_fast_mode(monkeypatch, capsys):
    monkeypatch.delenv(runtime.FAST_ENV, raising=False)
    assert course.main(["--write-back", "--only", "00", "-p", "seed", "1"]) == 2
    monkeypatch.setenv(runtime.FAST_ENV, "1")
    assert course.main(["--write-back", "--only", "00"]) == 2
    assert "--write-back refused" in capsys.readouterr().err


# --- a short notebook executed the way the course executes its notebooks --------------------

TINY_LOOP = """import time

import ipywidgets

from ptlib.progress import progress

for _ in progress(range(steps), desc=f"tiny loop of {steps}"):
    time.sleep(0.01)
bar = progress(total=4, desc="counted by hand")
bar.update(4)
bar.close()
"""


def tiny_course_notebook(path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    parameters = nbformat.v4.new_code_cell("steps = 6  # loop length")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(TINY_LOOP),
                      nbformat.v4.new_code_cell("ipywidgets.IntSlider(value=steps)")]
    nbformat.write(notebook, path)
    return path


def test_a_notebook_run_like_the_course_stores_finished_bars_and_no_machine_paths(
        tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)  # the kernel must work it out itself
    source = tiny_course_notebook(tmp_path / "00_tiny.ipynb")
    out = tmp_path / "reports"
    out.mkdir()
    course.run_notebook(source, out, {}, timeout=120)
    executed = nbformat.read(out / source.name, as_version=4)
    assert executed.metadata["papermill"]["input_path"]  # papermill's record, with paths ...

    course.write_back(out / source.name, source)
    stored = nbformat.read(source, as_version=4)
    assert course.machine_paths(stored.metadata) == []  # ... is not committed
    assert course.stale_outputs(stored) == []
    text = "".join(output.get("text", "") for output in stored.cells[1].outputs)
    assert "tiny loop of 6: 100%|" in text and "| 6/6 [" in text
    assert "counted by hand: 100%|" in text and "| 4/4 [" in text
    assert text.count("\n") == 2 and "\r" not in text  # one plain line per bar
    slider = stored.cells[2].outputs[0]["data"][course.WIDGET_VIEW]["model_id"]
    state = stored.metadata["widgets"][course.WIDGET_STATE]["state"]
    assert state[slider]["model_name"] == "IntSliderModel"  # a trusted notebook renders it
    assert set(state) == {slider} | course._referenced_models(state[slider])  # nothing stale


def test_stale_outputs_names_frozen_and_short_bars_and_stateless_widgets():
    notebook = nbformat.v4.new_notebook()
    frozen = nbformat.v4.new_output("display_data", data={
        "text/plain": "train free:   0%|          | 0/60 [00:00<?, ?it/s]",
        course.WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0}})
    short = nbformat.v4.new_output("stream", name="stdout",
                                   text="search random:   0%|   | 23/10000 [00:04<31:00]\n")
    done = nbformat.v4.new_output("stream", name="stderr",
                                  text="a:  50%|#  | 1/2 [00:01<00:01]\r"
                                       "a: 100%|##| 2/2 [00:02<00:00]\n")
    widget = nbformat.v4.new_output("display_data", data={
        "text/plain": "IntSlider(value=3)",
        course.WIDGET_VIEW: {"model_id": "def", "version_major": 2, "version_minor": 0}})
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [frozen, short, done, widget]
    notebook.cells = [cell]
    problems = course.stale_outputs(notebook)
    assert len(problems) == 3, problems
    assert "widget progress bar" in problems[0] and "23/10000" in problems[1]
    assert "def has no stored state" in problems[2]


def test_machine_paths_are_found_at_any_depth():
    source = str(NOTEBOOKS / "00.ipynb")  # this checkout, wherever it lives
    executed = str(Path(tempfile.gettempdir()) / "reports" / "00.ipynb")
    metadata = {"kernelspec": {"name": "python3"},
                "papermill": {"input_path": source, "nested": [{"out": executed}]}}
    assert course.machine_paths(metadata) == [
        f"papermill.input_path: {source[:80]}", f"papermill.nested.0.out: {executed[:80]}"]
    assert course.machine_paths({"kernelspec": {"name": "python3"}}) == []


# --- parameters: every one parses under papermill and survives fast mode ----------------------

NOTEBOOK_PATHS = course.course_notebooks(NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda path: path.name[:2])
def test_no_committed_output_prints_more_than_60_lines(path):
    """A reader meets evidence as a table and a figure, not a wall of text (issue 25)."""
    notebook = nbformat.read(path, as_version=4)
    long_outputs = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.get("output_type") == "stream" else (
                output.get("data", {}).get("text/plain", ""))
            lines = len("".join(text).splitlines())
            if lines > 60:
                long_outputs.append(f"cell {index}: {lines} lines")
    assert long_outputs == []


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda path: path.name[:2])
def test_no_committed_notebook_holds_a_placeholder(path):
    """A paragraph still waiting for its numbers (``TODO(study)``, ``+0.xxx``) never ships."""
    notebook = nbformat.read(path, as_version=4)
    waiting = [index for index, cell in enumerate(notebook.cells)
               if "TODO" in cell.source or "0.xxx" in cell.source]
    assert waiting == [], f"cells {waiting} of {path.name} hold a placeholder"


def _python(source: str) -> ast.Module:
    """A code cell's syntax tree, its IPython magics (``%matplotlib inline``) turned to Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    return ast.parse(TransformerManager().transform_cell(source))


def _fast_mode_call(notebook):
    """The notebook's ``ptlib.course.notebook.apply_fast_mode(globals(), fast, **values)`` call."""
    calls = [node for cell in notebook.cells if cell.cell_type == "code"
             for node in ast.walk(_python(cell.source))
             if isinstance(node, ast.Call)
             and getattr(node.func, "attr", None) == "apply_fast_mode"]
    assert len(calls) == 1, "one apply_fast_mode call per notebook"
    return calls[0]


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda path: path.name[:2])
def test_every_declared_parameter_parses_under_papermill(path):
    declared = course.declared_parameters(path)
    assert "fast" in declared
    assert list(papermill.inspect_notebook(str(path))) == declared
    course.check_parameters(path, {name: None for name in declared})  # each one accepted


def test_a_parameters_line_papermill_cannot_read_is_an_error(tmp_path):
    notebook = small_notebook(tmp_path / "00_demo.ipynb")
    edited = nbformat.read(notebook, as_version=4)
    edited.cells[1].source = "steps = 3\nbatch_size = 8  # 50 x 8 = 400 forwards\nfast = None"
    nbformat.write(edited, notebook)
    with pytest.raises(ConfigError, match=r"cannot read .*\['batch_size'\]"):
        course.check_parameters(notebook, {"steps": 5})


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda path: path.name[:2])
def test_every_parameter_can_be_overridden_in_both_modes(path):
    """A value given with -p reaches the notebook's code in full and in fast mode: only
    apply_fast_mode changes parameters after papermill's injected cell, and it skips given ones."""
    declared = course.declared_parameters(path)
    notebook = nbformat.read(path, as_version=4)
    start = next(i for i, cell in enumerate(notebook.cells)
                 if "parameters" in cell.metadata.get("tags", []))
    for cell in notebook.cells[start + 1:]:
        if cell.cell_type != "code":
            continue
        # No later cell re-binds a parameter, except ``fast`` itself, resolved from None.
        names = runtime.assigned_names(ast.unparse(_python(cell.source)))
        assert names & set(declared) <= {"fast"}, (path.name, cell.source[:80])
    call = _fast_mode_call(notebook)
    fast_names = [keyword.arg for keyword in call.keywords]
    assert fast_names and set(fast_names) <= set(declared) - {"fast"}
    values = dict.fromkeys(fast_names, "fast value")
    assert runtime.fast_values(False, set(), **values) == {}  # full mode: nothing changes
    for name in declared:
        given = runtime.given_parameters([
            "import ptlib", "steps = 150  # literal defaults",
            papermill.translators.translate_parameters("python3", "python", {name: 1},
                                                       "Parameters")])
        assert given == {name}
        assert name not in runtime.fast_values(True, given, **values)


def test_apply_fast_mode_keeps_given_values_and_refuses_unknown_names(monkeypatch):
    namespace = {"steps": 150, "seeds": [0, 1, 2], "fast": True}
    monkeypatch.setattr(runtime, "given_parameters", lambda history=None: {"steps"})
    changed = runtime.apply_fast_mode(namespace, True, steps=12, seeds=[0])
    assert changed == {"seeds": [0]} and namespace["steps"] == 150 and namespace["seeds"] == [0]
    assert runtime.apply_fast_mode(namespace, False, seeds=[5]) == {} and namespace["seeds"] == [0]
    with pytest.raises(ConfigError, match="stpes"):
        runtime.apply_fast_mode(namespace, True, stpes=3)


def test_given_parameters_reads_the_latest_injected_cell():
    history = ["", "# Parameters\nsteps = 3\n", "x = 1", "# Parameters\nlr = 0.1\nseeds = [0]\n",
               "ptlib.course.notebook.apply_fast_mode(globals(), fast, steps=12)"]
    assert runtime.given_parameters(history) == {"lr", "seeds"}
    assert runtime.given_parameters(["steps = 150", "fast = None"]) == set()
    assert runtime.given_parameters() == set()  # outside a kernel nothing was injected
