"""Run the course: execute every notebook with papermill, render HTML, write an index.

``python -m ptlib.course --out reports`` runs the course repository's
``notebooks/NN_*.ipynb`` (``--root``, default: found from the working folder) in order, each in
a fresh kernel with the notebooks folder as working directory, writes the executed notebook and
its HTML to ``reports/``, and builds ``reports/index.html`` from the metrics and figures each
notebook recorded (see ``ptlib.course.report``). ``-p name value`` overrides a parameter; a
name that is not in the notebook's ``parameters`` cell is an error (papermill itself would
only warn).
``--write-back`` copies the executed outputs into ``notebooks/`` (how the committed outputs are
made: they then always come from a full-mode run of the current sources, with no ``-p``).

The runner sets ``PTLIB_PROGRESS=final`` (unless set): nobody watches these kernels, so every
progress bar is stored as one plain line at its final count (see ``ptlib.progress``); and
``HF_HUB_DISABLE_PROGRESS_BARS=1``, so transformers' own bars are not stored as frozen widgets.
"""

import argparse
import ast
import html
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from ptlib.course.notebook import fast_mode
from ptlib.course.paths import course_root
from ptlib.course.report import REPORTS_ENV
from ptlib.errors import ConfigError
from ptlib.progress import PROGRESS_ENV

GLOSSARY = "GLOSSARY.md"  # beside the notebooks
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def course_notebooks(folder: Path) -> list[Path]:
    """The course's notebooks in order: ``NN_name.ipynb``."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def declared_parameters(notebook: Path) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters``, in order (read by Python's
    own parser, so a line papermill cannot read still counts)."""
    import nbformat

    cells = [cell for cell in nbformat.read(notebook, as_version=4).cells
             if "parameters" in cell.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{notebook.name}: expected one cell tagged 'parameters', "
                          f"found {len(cells)}")
    names = []
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
    return names


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Raise ``ConfigError`` for any parameter the notebook's ``parameters`` cell lacks, and for
    a parameters cell that papermill cannot fully read (it would refuse those names)."""
    import papermill

    known = papermill.inspect_notebook(str(notebook))
    unread = [name for name in declared_parameters(notebook) if name not in known]
    if unread:
        raise ConfigError(f"{notebook.name}: papermill cannot read the parameters cell's lines "
                          f"for {unread} (an '=' in a comment?)")
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
    stem = Path(GLOSSARY).stem
    body = body.replace(f'href="{GLOSSARY}', f'href="{stem}.html')  # see write_glossary
    executed.with_suffix(".html").write_text(body, encoding="utf-8")
    return seconds


MATHJAX = ("<script>window.MathJax={tex2jax:{inlineMath:[['$','$']],processEscapes:true}};"
           "</script><script src='https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/"
           "MathJax.js?config=TeX-AMS_CHTML-full'></script>")


def write_glossary(out: Path, source: Path) -> Path:
    """Render the notebooks' ``GLOSSARY.md`` to ``out/GLOSSARY.html``, where the executed
    notebooks' HTML links to it (its ``<a id>`` anchors are kept)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    body = markdown2html_mistune(source.read_text(encoding="utf-8"))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Glossary</title>"
            "<style>body{font-family:sans-serif;max-width:900px;margin:auto;padding:0 1em;"
            f"line-height:1.45}}</style>{MATHJAX}</head><body>{body}</body></html>")
    path = out / f"{source.stem}.html"
    path.write_text(page, encoding="utf-8")
    return path


def _widget_ids(outputs) -> set[str]:
    """Model ids of the widgets that ``outputs`` display."""
    ids = set()
    for output in outputs:
        view = output.get("data", {}).get(WIDGET_VIEW)
        if view and view.get("model_id"):
            ids.add(view["model_id"])
    return ids


def _referenced_models(value) -> set[str]:
    """Widget ids a widget's state refers to (``"IPY_MODEL_<id>"`` strings, at any depth)."""
    if isinstance(value, str):
        return {value[len("IPY_MODEL_"):]} if value.startswith("IPY_MODEL_") else set()
    if isinstance(value, dict):
        return set().union(set(), *(_referenced_models(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(set(), *(_referenced_models(item) for item in value))
    return set()


def committed_metadata(executed, cells) -> dict:
    """The notebook metadata worth committing from an executed notebook.

    papermill's record (machine paths, timings, parameters) is dropped; the widget state is
    kept, pruned to the widgets the outputs of ``cells`` display and the models those refer to
    (layouts, styles, children), so a trusted notebook renders them and nothing stale rides along.
    """
    metadata = {key: value for key, value in executed.metadata.items()
                if key not in ("papermill", "widgets")}
    state = executed.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    models = state.get("state", {})
    wanted = set().union(set(), *(_widget_ids(cell.get("outputs", [])) for cell in cells))
    kept, queue = {}, [model for model in wanted if model in models]
    while queue:
        model = queue.pop()
        if model in kept:
            continue
        kept[model] = models[model]
        queue.extend(ref for ref in _referenced_models(models[model]) if ref in models)
    if kept:
        metadata["widgets"] = {WIDGET_STATE: {**{k: v for k, v in state.items() if k != "state"},
                                              "state": kept}}
    return metadata


def write_back(executed: Path, source: Path) -> None:
    """Copy the run ``executed`` into ``source``, whose cells must be unchanged since.

    Outputs and execution counts travel, and so does the executed notebook's metadata (its
    widget state, pruned to the widgets the outputs show, so a trusted notebook renders them),
    less papermill's record, which holds machine paths and timings. Cell metadata stay the
    source's, so papermill's per-cell timings never reach the committed notebook either.
    """
    import nbformat

    ran, original = nbformat.read(executed, as_version=4), nbformat.read(source, as_version=4)
    ran_cells = [cell for cell in ran.cells
                 if "injected-parameters" not in cell.metadata.get("tags", [])]
    if [c.source for c in ran_cells] != [c.source for c in original.cells]:
        raise ConfigError(f"{source.name} changed since it was executed; run it again")
    for ran_cell, cell in zip(ran_cells, original.cells, strict=True):
        if cell.cell_type == "code":
            cell.outputs = ran_cell.outputs
            cell.execution_count = ran_cell.execution_count
    original.metadata = nbformat.from_dict(committed_metadata(ran, ran_cells))
    outputs = {f"cell {i}": cell.get("outputs", []) for i, cell in enumerate(original.cells)}
    roots = (str(source.resolve().parent.parent), str(Path.home()), tempfile.gettempdir())
    for problem in (machine_paths(original.metadata, roots) + machine_paths(outputs, roots)
                    + stale_outputs(original)):
        print(f"warning: {source.name}: {problem}", file=sys.stderr)  # written all the same
    nbformat.write(original, source)


# ---------------------------------------------------------------------------------------------
# Checks on a stored notebook: what a reader would see as broken


def machine_paths(value, roots: tuple[str, ...] | None = None, where: str = "") -> list[str]:
    """Places in ``value`` (nested dicts and lists) holding a path of this machine: the
    repository, the home folder or the temporary folder. Returns ``key.path: text`` entries."""
    if roots is None:
        roots = tuple(dict.fromkeys([str(Path.cwd()), str(Path.home()), tempfile.gettempdir()]))
    if isinstance(value, str):
        return [f"{where}: {value[:80]}"] if any(root in value for root in roots) else []
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else [])
    found = []
    for key, item in items:
        found += machine_paths(item, roots, f"{where}.{key}" if where else str(key))
    return found


_BAR = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")  # tqdm's "...| n/total [elapsed<left, rate]"


def _rendered_lines(text: str) -> list[str]:
    """Lines as a screen shows them: after a carriage return only the last frame remains."""
    return [line.split("\r")[-1] for line in text.split("\n")]


def stale_outputs(notebook) -> list[str]:
    """What a reader of the stored ``notebook`` would see as broken: progress bars short of
    their total, widget bars (stored at their first frame), and widgets without stored state."""
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    problems = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = output.get("text", "") if output.get("output_type") == "stream" else (
                data.get("text/plain", ""))
            text = "".join(text) if isinstance(text, list) else text
            view = data.get(WIDGET_VIEW)
            if view and _BAR.search(text):
                problems.append(f"cell {index}: a widget progress bar: {text.strip()[:70]!r}")
                continue
            if view and view.get("model_id") not in state:
                problems.append(f"cell {index}: widget {view.get('model_id')} has no stored state")
            for line in _rendered_lines(text):
                match = _BAR.search(line)
                if match and int(match.group(1)) < int(match.group(2)):
                    problems.append(f"cell {index}: a bar short of its total: {line.strip()!r}")
    return problems


# ---------------------------------------------------------------------------------------------
# The index page


def _metric_rows(metrics: dict) -> str:
    rows = []
    for key, value in metrics.items():
        shown = f"{value:.3f}" if isinstance(value, float) else json.dumps(value)
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{html.escape(shown)}</td></tr>")
    return "\n".join(rows)


def _figure(name: str, title: str) -> str:
    """One figure at its natural size (shrunk only to the page width), linked to the file."""
    src = html.escape(f"figures/{name}")
    caption = html.escape(title or name)
    return (f'<figure><a href="{src}" title="open at full size"><img src="{src}" '
            f'alt="{caption}" loading="lazy"></a><figcaption>{caption} '
            f'(<a href="{src}">full size</a>)</figcaption></figure>')


FAST_BANNER = (
    '<div class="banner"><strong>Fast mode (PTLIB_FAST=1).</strong> Every notebook ran with a '
    "handful of steps, seeds and facts, to check that the pipeline runs end to end. The numbers "
    "and figures below check the pipeline, not the results: most scores are near zero and no "
    "conclusion should be drawn from them. Run <code>make course</code> (full mode) for the "
    "course's results.</div>")


def write_index(out: Path, timings: dict[str, float], fast: bool) -> Path:
    """``index.html``: one section per notebook with its link, time, metrics and figures."""
    sections = []
    for stem, seconds in timings.items():
        record_path = out / "metrics" / f"{stem}.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        titles = record.get("figure_titles", {})
        figures = "".join(_figure(name, titles.get(name, "")) for name in record.get("figures", []))
        sections.append(
            f'<h2><a href="{html.escape(stem)}.html">{html.escape(stem)}</a></h2>'
            f"<p>ran in {seconds:.0f} s</p>"
            f"<table>{_metric_rows(record.get('metrics', {}))}</table><div>{figures}</div>"
        )
    mode = "fast mode (PTLIB_FAST=1)" if fast else "full mode"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>P-Tuning course reports"
        "</title><style>body{font-family:sans-serif;max-width:1240px;margin:auto;padding:0 1em}"
        "td{padding:2px 10px;border-bottom:1px solid #ddd}"
        "figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}"
        "figcaption{font-size:90%;color:#444}"
        ".banner{background:#fff3cd;border:1px solid #e0b800;padding:.8em 1em;margin:1em 0}"
        "</style></head><body>"
        f"<h1>P-Tuning course: reports</h1>{FAST_BANNER if fast else ''}"
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M')} in {mode}. Click a figure to open "
        f"it at full size. Terms: <a href='{Path(GLOSSARY).stem}.html'>the glossary</a>.</p>"
        f"{''.join(sections)}</body></html>"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ptlib.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None,
                        help="the course repository (default: the working folder or the "
                             "nearest one above it holding notebooks/ and studies/)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only notebooks whose name starts with one of these prefixes")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="override a notebook parameter")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--write-back", action="store_true",
                        help="copy each executed notebook's outputs into notebooks/")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    fast = fast_mode()
    if args.write_back and (parameters or fast):
        why = "-p overrides" if parameters else "fast mode (PTLIB_FAST)"
        print(f"--write-back refused with {why}: the committed outputs must come from the "
              "notebooks as written, in full mode", file=sys.stderr)
        return 2
    try:
        folder = course_root(args.root) / "notebooks"
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ[REPORTS_ENV] = str(out)
    # Nobody watches these kernels (they inherit this environment): ptlib's bars print one final
    # line each, and transformers' own ("Loading weights") show none, not a widget frozen at 0%.
    os.environ.setdefault(PROGRESS_ENV, "final")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    notebooks = [nb for nb in course_notebooks(folder)
                 if args.only is None or nb.name.startswith(tuple(args.only))]
    if not notebooks:
        print(f"no notebook in {folder} matched {args.only}", file=sys.stderr)
        return 1
    timings = {}
    for notebook in notebooks:
        print(f"running {notebook.name} ...", flush=True)
        timings[notebook.stem] = run_notebook(notebook, out, parameters, args.timeout)
        print(f"  done in {timings[notebook.stem]:.0f} s", flush=True)
        if args.write_back:
            write_back(out / notebook.name, notebook)
    if (folder / GLOSSARY).exists():
        write_glossary(out, folder / GLOSSARY)
    (out / "timings.json").write_text(json.dumps({"fast": fast, "seconds": timings}, indent=2)
                                      + "\n")
    index = write_index(out, timings, fast)
    print(f"wrote {index}")
    return 0


