"""``shapes.RESULTS`` names the shape of every API method that is annotated with one."""

from __future__ import annotations

import msgspec

from switchboard.daemon import shapes
from switchboard.daemon.features import REGISTRY

_STRUCTS = {
    name for name in dir(shapes)
    if isinstance(getattr(shapes, name), type) and issubclass(getattr(shapes, name), msgspec.Struct)
}  # fmt: skip


def _declared(fn: object, *, stream: bool) -> str | None:
    """The shape a method's return annotation names (a stream's: each item's), else None."""
    text = str(getattr(fn, "__annotations__", {}).get("return", ""))
    if stream:
        text = text.removeprefix("AsyncIterator[").removesuffix("]")
    inner = text.removeprefix("list[").removesuffix("]")
    return text if inner in _STRUCTS else None


def test_every_method_annotated_with_a_shape_is_in_results_with_that_shape() -> None:
    declared = {
        method: shape
        for kind, stream in (("methods", False), ("streams", True))
        for method, fn in getattr(REGISTRY, kind).items()
        if (shape := _declared(fn, stream=stream)) is not None
    }
    assert len(declared) > 30
    for method, shape in declared.items():
        assert shapes.RESULTS.get(method) == shape, method


def test_every_result_names_a_method_and_a_shape() -> None:
    known = set(REGISTRY.methods) | set(REGISTRY.streams)
    for method, shape in shapes.RESULTS.items():
        assert method in known, f"{method} is no API method"
        assert shape.removeprefix("list[").removesuffix("]") in _STRUCTS, shape
