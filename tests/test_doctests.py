"""Every module doctest of the stream logic, the models and the wiring runs in the suite.

Collected by walking the installed packages (the code imports as
``audienceflow.operators.*`` from ``operators/``), so a new module is included
without listing it.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import audienceflow.flows
import audienceflow.models
import audienceflow.operators
from audienceflow.operators import native

MODULES = sorted(
    info.name
    for pkg in (audienceflow.operators, audienceflow.models, audienceflow.flows)
    for info in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}.")
    if info.name != native.LIBRARY  # the compiled build's code library (make fast), no source
)


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests_pass(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_doctests_are_found() -> None:
    """The walk sees the modules, and their examples (a broken walk would pass vacuously)."""
    assert "audienceflow.operators.caps" in MODULES and "audienceflow.models.hook" in MODULES
    attempted = sum(
        doctest.testmod(importlib.import_module(n), report=False).attempted for n in MODULES
    )
    assert attempted >= 20
