"""The course runner (ptlib.course) and the report recorder, without executing the real course."""

import json

import matplotlib
import nbformat
import pytest

from ptlib import course
from ptlib.errors import ConfigError
from ptlib.report import REPORTS_ENV, Recorder

matplotlib.use("Agg")


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
    names = [path.name for path in course.course_notebooks()]
    assert names == sorted(names) and len(names) >= 7
    assert names[0].startswith("00_") and names[-1].startswith("06_")


def test_an_unknown_parameter_is_an_error(tmp_path):
    notebook = small_notebook(tmp_path / "00_demo.ipynb")
    course.check_parameters(notebook, {"steps": 5})
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['stpes'\].*'steps'"):
        course.check_parameters(notebook, {"stpes": 5})


def test_write_back_copies_outputs_and_refuses_changed_sources(tmp_path):
    executed = small_notebook(tmp_path / "ran.ipynb")
    source = small_notebook(tmp_path / "source.ipynb", outputs=False)
    course.write_back(executed, source)
    cell = nbformat.read(source, as_version=4).cells[2]
    assert cell.outputs[0].text == "3\n" and cell.execution_count == 2
    assert "papermill" not in cell.metadata  # only outputs travel, not timing metadata

    edited = nbformat.read(source, as_version=4)
    edited.cells[2].source = "print(steps * 2)"
    nbformat.write(edited, source)
    with pytest.raises(ConfigError, match="changed since it was executed"):
        course.write_back(executed, source)


def test_index_links_each_notebook_with_its_metrics_and_figures(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv(REPORTS_ENV, str(tmp_path))
    recorder = Recorder("00_demo")
    fig, _ = plt.subplots()
    recorder.figure(fig, "curve")
    plt.close(fig)
    recorder.record(p_at_1=0.25, task="capital_of")
    saved = json.loads(recorder.save().read_text())
    assert saved == {"notebook": "00_demo", "metrics": {"p_at_1": 0.25, "task": "capital_of"},
                     "figures": ["00_demo-curve.png"]}
    assert (tmp_path / "figures" / "00_demo-curve.png").stat().st_size > 0

    page = course.write_index(tmp_path, {"00_demo": 12.0, "01_missing": 3.0}, fast=True).read_text()
    assert '<a href="00_demo.html">00_demo</a>' in page and "ran in 12 s" in page
    assert "<td>p_at_1</td><td>0.250</td>" in page
    assert 'src="figures/00_demo-curve.png"' in page
    assert '<a href="01_missing.html">' in page  # a notebook that recorded nothing still appears
    assert "fast mode" in page
