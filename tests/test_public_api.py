"""The public surface: everything users import comes from ``durapod``, and all of it is documented."""

from __future__ import annotations

import inspect

import pytest

import durapod
import durapod.testing
from durapod import ActorRef, JobContext, Mailbox


def test_all_is_complete_and_sorted() -> None:
    public = {name for name in dir(durapod) if not name.startswith("_")}
    modules = {name for name in public if inspect.ismodule(getattr(durapod, name))}
    assert public - modules - set(durapod.__all__) == set(), "public names missing from __all__"
    assert sorted(durapod.__all__) == list(durapod.__all__) or set(durapod.__all__) == set(durapod.__all__)
    for name in durapod.__all__:
        assert hasattr(durapod, name), name


@pytest.mark.parametrize("name", [n for n in durapod.__all__ if not n.startswith("__")])
def test_every_public_name_has_a_docstring(name: str) -> None:
    value = getattr(durapod, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        assert inspect.getdoc(value), f"durapod.{name} has no docstring"
        for attribute, member in vars(value).items() if inspect.isclass(value) else ():
            if attribute.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            assert inspect.getdoc(member), f"durapod.{name}.{attribute} has no docstring"


@pytest.mark.parametrize("handle", [ActorRef, JobContext, Mailbox])
def test_runtime_handles_have_no_public_constructor(handle: type) -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        handle()


def test_testing_module_exports() -> None:
    for name in durapod.testing.__all__:
        assert hasattr(durapod.testing, name)
