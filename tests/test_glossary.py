"""The course glossary (notebooks/GLOSSARY.md): the terms a learner meets before their definition
are defined, every link to it lands on an anchor, and the report renders it."""

import re
from pathlib import Path

import nbformat

from ptlib.course import runner as course

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

ANCHOR = re.compile(r'<a id="([a-z0-9-]+)"></a>')
LINK = re.compile(r"GLOSSARY\.md(?:#([A-Za-z0-9-]+))?\)")
# Terms issue 16 found used before they were defined, by their anchors.
REQUIRED = {"teacher-forcing", "gguf", "lama", "optiprompt", "rmsnorm", "jvp",
            "a-backward-counts-as-two", "em"}


def anchors() -> set[str]:
    return set(ANCHOR.findall((NOTEBOOKS / course.GLOSSARY).read_text(encoding="utf-8")))


def notebook_links() -> dict[str, set[str]]:
    """Notebook name -> anchors its markdown links to ("" for the glossary as a whole)."""
    links = {}
    for path in course.course_notebooks(NOTEBOOKS):
        cells = nbformat.read(path, as_version=4).cells
        links[path.name] = {match or "" for cell in cells if cell.cell_type == "markdown"
                            for match in LINK.findall(cell.source)}
    return links


def test_the_required_terms_are_defined_and_linked_from_the_notebooks():
    defined = anchors()
    assert REQUIRED <= defined
    linked = set().union(*notebook_links().values())
    assert REQUIRED <= linked, sorted(REQUIRED - linked)


def test_every_link_lands_on_an_anchor_and_every_notebook_links_the_glossary():
    defined = anchors() | {""}
    for name, links in notebook_links().items():
        assert links, f"{name} never links the glossary"
        assert links <= defined, (name, sorted(links - defined))


def test_the_glossary_is_alphabetical_and_each_term_has_an_anchor():
    text = (NOTEBOOKS / course.GLOSSARY).read_text(encoding="utf-8")
    headings = re.findall(r"^### (.+)$", text, flags=re.MULTILINE)
    letters = [re.sub(r"[^a-z0-9]", "", heading.lower()) for heading in headings]
    assert letters == sorted(letters)  # alphabetical, punctuation aside
    assert len(ANCHOR.findall(text)) == len(headings)
    for anchor in anchors():  # links inside the glossary also land
        assert text.count(f'id="{anchor}"') == 1
    for target in re.findall(r"\]\(#([a-z0-9-]+)\)", text):
        assert target in anchors()


def test_the_report_renders_the_glossary_with_its_anchors(tmp_path):
    page = course.write_glossary(tmp_path, NOTEBOOKS / course.GLOSSARY).read_text(encoding="utf-8")
    assert '<a id="teacher-forcing"></a>' in page and "<h1" in page
