"""docs/bad-input.md is the rendering of the bad-input catalogue, and names only tests that exist."""

from __future__ import annotations

import importlib

from tests.badinput import catalogue


def test_the_page_is_the_current_rendering_of_the_catalogue() -> None:
    """docs/bad-input.md equals what ``python -m tests.badinput.catalogue --write`` writes."""
    assert catalogue.DOC.read_text() == catalogue.render(), (
        "docs/bad-input.md is stale: run .venv/bin/python -m tests.badinput.catalogue --write"
    )


def test_every_class_names_a_test_that_exists() -> None:
    """Each row's test is a test function of tests/badinput/, and every test module there has a row."""
    named = set()
    for item in catalogue.CLASSES:
        module_file, _, function = item.test.partition("::")
        module = importlib.import_module(f"tests.badinput.{module_file.removesuffix('.py')}")
        assert callable(getattr(module, function, None)) and function.startswith("test_"), item.test
        named.add(module_file)
    modules = {p.name for p in catalogue.MANIFESTS.parents[1].glob("test_*.py")} - {"test_bad_input_doc.py"}
    assert modules <= named, modules - named
