"""Run the course: execute every notebook with papermill, render HTML, write an index.

``python -m ptlib.course --out reports`` runs ``notebooks/NN_*.ipynb`` in order, each in a fresh
kernel with the notebooks folder as working directory, writes the executed notebook and its HTML
to ``reports/``, and builds ``reports/index.html`` from the metrics and figures each notebook
recorded (see ``ptlib.report``). ``-p name value`` overrides a parameter; a name that is not in
the notebook's ``parameters`` cell is an error (papermill itself would only warn).
``--write-back`` copies the executed outputs into ``notebooks/`` (how the committed outputs are
made: they then always come from a run of the current sources).
"""

import argparse
import ast
import html
import json
import os
import sys
import time
from pathlib import Path

from ptlib.errors import ConfigError
from ptlib.report import REPORTS_ENV

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def course_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The course's notebooks in order: ``NN_name.ipynb``."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Raise ``ConfigError`` for any parameter the notebook's ``parameters`` cell lacks."""
    import papermill

    known = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigError(f"{notebook.name}: unknown parameter(s) {unknown}; "
                          f"its parameters are {sorted(known)}")


def run_notebook(notebook: Path, out: Path, parameters: dict, timeout: int) -> float:
    """Execute one notebook into ``out`` and render its HTML; return the wall time in s."""
    import papermill
    from nbconvert import HTMLExporter

    check_parameters(notebook, parameters)
    executed = out / notebook.name
    started = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                               cwd=str(notebook.parent), kernel_name="python3",
                               execution_timeout=timeout, progress_bar=False)
    seconds = time.perf_counter() - started
    body, _ = HTMLExporter().from_filename(str(executed))
    executed.with_suffix(".html").write_text(body, encoding="utf-8")
    return seconds


def write_back(executed: Path, source: Path) -> None:
    """Copy the outputs of ``executed`` into ``source``, whose cells must be unchanged.

    Only outputs and execution counts travel; cell and notebook metadata stay the source's, so
    papermill's timing metadata never reaches the committed notebook.
    """
    import nbformat

    ran, original = nbformat.read(executed, as_version=4), nbformat.read(source, as_version=4)
    if [c.source for c in ran.cells] != [c.source for c in original.cells]:
        raise ConfigError(f"{source.name} changed since it was executed; run it again")
    for ran_cell, cell in zip(ran.cells, original.cells, strict=True):
        if cell.cell_type == "code":
            cell.outputs = ran_cell.outputs
            cell.execution_count = ran_cell.execution_count
    nbformat.write(original, source)


def _metric_rows(metrics: dict) -> str:
    rows = []
    for key, value in metrics.items():
        shown = f"{value:.3f}" if isinstance(value, float) else json.dumps(value)
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{html.escape(shown)}</td></tr>")
    return "\n".join(rows)


def write_index(out: Path, timings: dict[str, float], fast: bool) -> Path:
    """``index.html``: one section per notebook with its link, time, metrics and figures."""
    sections = []
    for stem, seconds in timings.items():
        record_path = out / "metrics" / f"{stem}.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        figures = "".join(f'<img src="figures/{html.escape(name)}" width="520">'
                          for name in record.get("figures", []))
        sections.append(
            f'<h2><a href="{html.escape(stem)}.html">{html.escape(stem)}</a></h2>'
            f"<p>ran in {seconds:.0f} s</p>"
            f"<table>{_metric_rows(record.get('metrics', {}))}</table><div>{figures}</div>"
        )
    mode = "fast mode (PTLIB_FAST=1)" if fast else "full mode"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>P-Tuning course reports"
        "</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "td{padding:2px 10px;border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>P-Tuning course: reports</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M')} "
        f"in {mode}.</p>{''.join(sections)}</body></html>"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptlib.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only notebooks whose name starts with one of these prefixes")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="override a notebook parameter")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--write-back", action="store_true",
                        help="copy each executed notebook's outputs into notebooks/")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ[REPORTS_ENV] = str(out)
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    notebooks = [nb for nb in course_notebooks()
                 if args.only is None or nb.name.startswith(tuple(args.only))]
    if not notebooks:
        print("no notebooks matched", file=sys.stderr)
        return 1
    timings = {}
    for notebook in notebooks:
        print(f"running {notebook.name} ...", flush=True)
        timings[notebook.stem] = run_notebook(notebook, out, parameters, args.timeout)
        print(f"  done in {timings[notebook.stem]:.0f} s", flush=True)
        if args.write_back:
            write_back(out / notebook.name, notebook)
    from ptlib.runtime import fast_mode

    fast = fast_mode()
    (out / "timings.json").write_text(json.dumps({"fast": fast, "seconds": timings}, indent=2)
                                      + "\n")
    index = write_index(out, timings, fast)
    print(f"wrote {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
