"""Progress bars (ptlib.progress) and the one place that decides how they show
(ptlib.progress.progress_style)."""

import io

import pytest
from tqdm import std

from ptlib import progress as progress_module
from ptlib import progress as runtime
from ptlib.errors import ConfigError
from ptlib.progress import FinalLineBar, bar_class, end_early, library_bars, progress


class FakeKernel:
    """Stands in for an ipykernel: the current request's ``allow_stdin`` flag is all it has."""

    def __init__(self, allow_stdin):
        self.allow_stdin = allow_stdin

    def get_parent(self, channel="shell"):
        return {"header": {"msg_type": "execute_request"},
                "content": {"code": "", "allow_stdin": self.allow_stdin}}


def test_the_style_follows_the_environment_then_the_execution_context(monkeypatch):
    monkeypatch.delenv(runtime.PROGRESS_ENV, raising=False)
    assert runtime.progress_style() == "text"  # pytest: no kernel, a terminal-like stream
    monkeypatch.setattr(runtime, "running_kernel", lambda: FakeKernel(allow_stdin=False))
    assert runtime.frontend_attached() is False
    assert runtime.progress_style() == "final"  # papermill, nbval, nbconvert --execute
    monkeypatch.setattr(runtime, "running_kernel", lambda: FakeKernel(allow_stdin=True))
    assert runtime.progress_style() == "widget"  # JupyterLab, Notebook, VS Code, Colab
    monkeypatch.setenv(runtime.PROGRESS_ENV, "final")
    assert runtime.progress_style() == "final"  # the course runner's explicit choice wins
    monkeypatch.setenv(runtime.PROGRESS_ENV, "widgets")
    with pytest.raises(ConfigError, match="PTLIB_PROGRESS='widgets'"):
        runtime.progress_style()


def test_each_style_has_its_bar():
    from tqdm.notebook import tqdm as notebook_tqdm

    assert issubclass(bar_class("widget"), notebook_tqdm)
    assert bar_class("final") is FinalLineBar
    assert issubclass(bar_class("text"), std.tqdm)


def test_a_final_line_bar_prints_one_line_at_its_final_count():
    out = io.StringIO()
    for _ in FinalLineBar(range(60), desc="train lstm seed 2", file=out):
        assert out.getvalue() == ""  # nothing while it runs
    line = out.getvalue()
    assert line.startswith("train lstm seed 2: 100%|██████████| 60/60 [")
    assert line.count("\n") == 1 and line.endswith("]\n") and "\r" not in line

    out = io.StringIO()
    bar = FinalLineBar(total=5, desc="by hand", file=out)
    bar.update(2)
    bar.update(3)
    bar.close()
    bar.close()  # a second close prints nothing more
    assert out.getvalue().count("\n") == 1 and "| 5/5 [" in out.getvalue()

    out = io.StringIO()
    for _ in FinalLineBar(range(3), desc="transient", leave=False, file=out):
        pass
    assert out.getvalue() == ""  # leave=False: a bar meant to vanish leaves nothing


def test_progress_follows_the_style_and_disable(monkeypatch, capsys):
    monkeypatch.setenv(runtime.PROGRESS_ENV, "final")
    assert list(progress(range(4), desc="four")) == [0, 1, 2, 3]
    assert list(progress(range(4), desc="hidden", disable=True)) == [0, 1, 2, 3]
    out = capsys.readouterr().out
    assert "four: 100%|" in out and "| 4/4 [" in out and "hidden" not in out
    monkeypatch.setenv(runtime.PROGRESS_ENV, "off")
    assert list(progress(range(2), desc="off")) == [0, 1]
    captured = capsys.readouterr()
    assert "off" not in captured.out + captured.err


def test_transformers_bars_follow_ptlib_inside_library_bars(monkeypatch, capsys):
    hf_logging = pytest.importorskip("transformers.utils.logging")
    if not hasattr(hf_logging, "set_tqdm_hook"):
        pytest.skip("this transformers has no tqdm hook (it is silenced instead)")
    monkeypatch.setenv(runtime.PROGRESS_ENV, "final")
    before = hf_logging.set_tqdm_hook(None)
    hf_logging.set_tqdm_hook(before)
    with library_bars():
        for _ in hf_logging.tqdm(range(272), desc="Loading weights"):
            pass
    assert "Loading weights: 100%|██████████| 272/272 [" in capsys.readouterr().out
    assert hf_logging.set_tqdm_hook(before) is before  # the previous hook is back


def test_importing_ptlib_leaves_transformers_bars_alone():
    hf_logging = pytest.importorskip("transformers.utils.logging")
    import ptlib  # noqa: F401

    if hasattr(hf_logging, "set_tqdm_hook"):
        previous = hf_logging.set_tqdm_hook(None)
        hf_logging.set_tqdm_hook(previous)
        assert previous is not progress_module._library_bar


def test_a_loop_that_stops_early_on_purpose_ends_complete():
    out = io.StringIO()
    bar = FinalLineBar(range(10_000), desc="search autoprompt", file=out)
    for iteration in bar:
        if iteration == 22:  # the forward budget is spent
            end_early(bar)
            break
    del bar  # the loop's generator closes the bar
    line = out.getvalue()  # tqdm counts the iterations finished before the break
    assert "100%|" in line and "| 22/22 [" in line

    out = io.StringIO()
    bar = FinalLineBar(total=10, desc="by hand", file=out)
    bar.update(4)
    end_early(bar)
    bar.close()
    assert "| 4/4 [" in out.getvalue()

    out = io.StringIO()
    bar = FinalLineBar(total=60, desc="interrupted", file=out)
    bar.update(20)
    bar.close()
    assert "| 20/60 [" in out.getvalue()  # a real interruption still shows
