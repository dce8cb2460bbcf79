"""Dataclasses whose ``__init__`` is written out, not generated, take the arguments and
give the defaults the generated one would.

A class made per event or per user (``records.Event``, ``state.UserState`` ...) writes
its ``__init__`` so that the compiled build compiles it (mypyc leaves a generated one
interpreted). Every such class of the engine is found here, by its
``@dataclass(init=False)`` and an ``__init__`` of its own, and checked against its fields:
the same parameters in the same order, the same defaults, a factory's field made fresh
for each instance when its argument is left out (``None``), and every argument stored
in its field.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import audienceflow.models
import audienceflow.operators

pytestmark = pytest.mark.timeout(60)


def _written() -> list[type]:
    found: dict[str, type] = {}
    for pkg in (audienceflow.operators, audienceflow.models):
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_compiled"):  # the compiled build's shared library
                continue
            module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and obj.__module__ == module.__name__
                    and dataclasses.is_dataclass(obj)
                    and not obj.__dataclass_params__.init  # type: ignore[attr-defined]
                    and "__init__" in vars(obj)
                ):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


WRITTEN = _written()


def test_the_classes_made_per_event_and_per_user_are_among_them() -> None:
    names = {c.__qualname__ for c in WRITTEN}
    assert {"Event", "UserState", "OpenSession"} <= names


def _arguments(fields: list[dataclasses.Field[Any]]) -> dict[str, Any]:
    """A distinct value per field (an object nobody else holds)."""
    return {f.name: object() for f in fields}


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda c: c.__qualname__)
def test_a_written_init_matches_the_fields(cls: type) -> None:
    fields = [f for f in dataclasses.fields(cls) if f.init]
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default or (p.default is f.default), f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default is None, f"{f.name}: a factory's field takes None for 'make one'"
        else:
            assert p.default is inspect.Parameter.empty, f.name

    # Every argument lands in its field.
    given = _arguments(fields)
    made = cls(**given)
    for name, value in given.items():
        assert getattr(made, name) is value, name

    # Left out, each takes its default; a factory's is new for each instance.
    required = {
        f.name: given[f.name]
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    a, b = cls(**required), cls(**required)
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert getattr(a, f.name) == f.default or getattr(a, f.name) is f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(a, f.name) == f.default_factory(), f.name
            assert getattr(a, f.name) is not getattr(b, f.name), f"{f.name} is shared"


def _plain_value(annotation: Any) -> Any:
    text = str(annotation)
    for word, value in (("dict", {}), ("list", []), ("float", 1.5), ("int", 2), ("str", "x")):
        if text.startswith(word):
            return value
    return None


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda c: c.__qualname__)
def test_a_class_with_a_written_init_copies_and_pickles(cls: type) -> None:
    """Copies and pickles are made without calling ``__init__`` with the fields (the
    compiled build's native class would run it with none): each class says how."""
    import copy
    import pickle

    fields = [f for f in dataclasses.fields(cls) if f.init]
    made = cls(
        **{
            f.name: _plain_value(f.type)
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
    )
    for again in (copy.copy(made), copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
        assert type(again) is cls and again == made
