"""ptlib as others install it: a wheel, installed into a fresh virtual environment, used from a
folder that is not the checkout. The shipped tasks and the data card travel inside the wheel."""

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ptlib import list_tasks

ROOT = Path(__file__).resolve().parent.parent

USE_IT = """
import ptlib, ptlib.data
from importlib.resources import files
assert "site-packages" in ptlib.__file__, ptlib.__file__
assert (files("ptlib.tasks") / "README.md").is_file(), "the data card is missing"
task = ptlib.load_task("capital_of")
lm = ptlib.load_lm("tiny")
result = ptlib.train(lm, "[P] {x} [P]", task.split("train"), task.split("dev"),
                     ptlib.TrainConfig(encoder="lstm", steps=2, batch_size=4, hidden_size=16),
                     show_progress=False)
assert result.history.step == [1, 2]
print("tasks", len(ptlib.list_tasks()), "from", ptlib.__file__)
"""


def _run(args: list, cwd: Path, **env) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                          env=os.environ | {"PYTHONNOUSERSITE": "1"} | env, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the ptlib wheel; the dependencies come from this environment
    through a .pth line (so nothing is downloaded), never ptlib itself."""
    tmp = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(tmp / "dist"), str(ROOT)], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("ptlib-*.whl")
    venv.EnvBuilder(with_pip=False).create(tmp / "env")
    python = tmp / "env" / "bin" / "python"
    target = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                        "['purelib'])"], cwd=tmp).stdout.strip())
    (target / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
          "--target", str(target), str(wheel)], cwd=tmp)
    return python


def test_the_wheel_loads_tasks_and_trains_outside_the_checkout(installed, tmp_path):
    done = _run([str(installed), "-c", USE_IT], cwd=tmp_path)
    assert f"tasks {len(list_tasks())} from" in done.stdout and str(ROOT) not in done.stdout


def test_the_installed_cli_runs(installed, tmp_path):
    done = _run([str(installed), "-m", "ptlib", "eval", "--task", "capital_of", "--model",
                 "tiny", "--template", "The capital of {x} is", "--out", "out"], cwd=tmp_path)
    assert '"exact_match"' in done.stdout and (tmp_path / "out" / "metrics.json").is_file()


def test_the_installed_course_asks_for_the_repository_outside_it(installed, tmp_path):
    done = subprocess.run([str(installed), "-m", "ptlib.course", "--only", "00"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONNOUSERSITE": "1"})
    assert done.returncode == 2
    assert "not part of the ptlib package" in done.stderr and "--root" in done.stderr


def test_the_installed_course_runs_a_notebook_of_the_repository_given(installed, tmp_path):
    """The course tooling from the wheel, the notebooks from the checkout named by --root: the
    kernel imports the installed ptlib, not the checkout's. (The dependencies, nbconvert's
    templates among them, come from this environment: see ``installed``.)"""
    shared = str(Path(sys.prefix) / "share" / "jupyter")  # nbconvert's templates, as deps
    done = _run([str(installed), "-m", "ptlib.course", "--root", str(ROOT), "--only", "00",
                 "--out", str(tmp_path / "reports")], cwd=tmp_path, PTLIB_FAST="1",
                JUPYTER_PATH=shared)
    assert "done in" in done.stdout
    assert (tmp_path / "reports" / "00_setup_and_the_model.html").is_file()
    assert (tmp_path / "reports" / "index.html").is_file()
