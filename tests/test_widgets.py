"""The generation explorer of ptlib.course.widgets without a browser, on the tiny model: the
plain functions give what ``ptlib.generate`` gives, and the text box reruns them when its value
changes (the browser test, ``make ui-test``, checks the rendering)."""

import html

import torch

import ptlib
from ptlib.course import widgets
from ptlib.deep_prompt import deep_shape


def prompts_for(lm) -> widgets.Prompts:
    """A deep prompt, input vectors and a manual template, drawn at random for the tiny model."""
    generator = torch.Generator().manual_seed(0)
    deep = torch.randn(2, deep_shape(lm.model).width, generator=generator)  # (L, D)
    vectors = torch.randn(2, lm.width, generator=generator)  # (L, d)
    return {"deep": ("[P][P] capital of {x}:", {"deep_prompt": deep}),
            "vectors": ("[P][P] capital of {x}:", {"prompt": vectors}),
            "manual": ("The capital of {x} is", {})}


def test_continuations_are_what_generate_gives(tiny):
    prompts = prompts_for(tiny)
    said = widgets.continuations(tiny, prompts, ["France", "Peru"], max_new_tokens=4)
    assert list(said) == list(prompts)
    for name, (template, arguments) in prompts.items():
        assert said[name] == ptlib.generate(tiny, template, ["France", "Peru"],
                                            max_new_tokens=4, **arguments)


def test_the_generation_table_has_a_line_per_fact(tiny):
    facts = [ptlib.Fact("France", "Paris"), ptlib.Fact("Peru", "Lima")]
    text = widgets.generation_table(tiny, prompts_for(tiny), facts, max_new_tokens=4, width=12)
    lines = text.splitlines()
    assert len(lines) == 1 + len(facts)
    assert lines[0].split() == ["subject", "deep", "vectors", "manual", "expected"]
    assert lines[1].startswith("France") and lines[1].endswith("'Paris'")


def test_the_text_box_reruns_the_continuations(tiny):
    prompts = prompts_for(tiny)
    box, shown = widgets.interactive_continuation(tiny, prompts, "France",
                                                  max_new_tokens=3).children
    expected = widgets.continuation_text(tiny, prompts, "France", max_new_tokens=3)
    assert shown.value == f"<pre>{html.escape(expected)}</pre>"
    assert expected.count("France -> ") == len(prompts)
    box.value = "Japan"  # what typing a subject and pressing Enter does
    assert "Japan -> " in html.unescape(shown.value) and "France" not in shown.value
    box.value = "  "
    assert "type a subject" in shown.value
