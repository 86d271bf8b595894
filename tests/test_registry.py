"""featspace.registry.Registry on its own: registration, duplicates, look-ups, the signature check before a
build, defaults and descriptions. The registries built on it (heads, backbones, datasets, few-shot splits)
are tested beside their packages."""

from __future__ import annotations

import pytest

from featspace.registry import Registry, defaults_of, parameters_of


class Widget:
    """A widget with a size.

    More text that is not the description.
    """

    def __init__(self, width: int, height: int, colour: str = "red", *, shiny: bool = False) -> None:
        self.width, self.height, self.colour, self.shiny = width, height, colour, shiny


def make_gadget(width: int, height: int, depth: int) -> tuple[int, int, int]:
    return width, height, depth


def open_factory(width: int, **options: object) -> dict[str, object]:
    """Takes anything."""
    return {"width": width, **options}


@pytest.fixture
def widgets() -> Registry:
    registry = Registry("widget", fixed=("width", "height"), parameter="option")
    registry.register("widget")(Widget)
    registry.register("gadget", description="a three-sided thing", size="large")(make_gadget)
    registry.register("open")(open_factory)
    return registry


def test_register_returns_the_object_and_keeps_registration_order(widgets):
    assert widgets.register("plain")(Widget) is Widget
    assert widgets.names() == ["widget", "gadget", "open", "plain"]
    assert list(widgets) == widgets.names() and len(widgets) == 4
    assert "gadget" in widgets and "nope" not in widgets and 3 not in widgets
    assert widgets.get("widget") is Widget


def test_same_object_again_is_a_no_op_and_a_different_one_is_refused(widgets):
    widgets.register("widget")(Widget)
    assert widgets.names().count("widget") == 1
    with pytest.raises(ValueError, match="widget name 'widget' is already registered by Widget"):
        widgets.register("widget")(make_gadget)
    assert widgets.get("widget") is Widget
    with pytest.raises(ValueError, match="non-empty string"):
        widgets.register("")
    with pytest.raises(TypeError, match="class or a function"):
        widgets.register("number")(3)


def test_unknown_name_lists_the_valid_ones(widgets):
    for lookup in (widgets.get, widgets.describe, widgets.parameters, widgets.defaults, widgets.entry):
        with pytest.raises(ValueError, match="unknown widget 'nope'; valid widgets: widget, gadget, open"):
            lookup("nope")
    with pytest.raises(ValueError, match="unknown widget"):
        widgets.build("nope", 1, 2)
    with pytest.raises(ValueError, match="unknown widget"):
        widgets.get(None)  # a non-string name is just an unknown name


def test_descriptions_default_to_the_first_docstring_line(widgets):
    assert widgets.describe("widget") == "A widget with a size."
    assert widgets.describe("gadget") == "a three-sided thing"
    widgets.register("undocumented")(lambda width, height: None)
    assert widgets.describe("undocumented") == ""


def test_parameters_and_defaults_come_from_the_signature_without_the_fixed_arguments(widgets):
    assert widgets.parameters("widget") == ["colour", "shiny"]
    assert widgets.defaults("widget") == {"colour": "red", "shiny": False}
    assert widgets.parameters("gadget") == ["depth"]
    assert widgets.defaults("gadget") == {}  # depth has no default
    assert widgets.parameters("open") == []  # **options is not a named parameter
    assert parameters_of(Widget) == ["width", "height", "colour", "shiny"]
    assert defaults_of(Widget, fixed=("width",)) == {"colour": "red", "shiny": False}


def test_build_checks_keywords_before_calling(widgets):
    built = widgets.build("widget", 3, 4, colour="blue", shiny=True)
    assert (built.width, built.height, built.colour, built.shiny) == (3, 4, "blue", True)
    with pytest.raises(ValueError, match=r"unknown widget option\(s\) colour, weight for 'gadget'; valid options: depth"):
        widgets.build("gadget", 1, 2, weight=3, colour="x")
    # a fixed argument passed by keyword is not one of the entry's options either
    with pytest.raises(ValueError, match=r"option\(s\) height, width for"):
        widgets.build("widget", width=3, height=4)
    widgets.register("bare")(lambda width, height: (width, height))
    with pytest.raises(ValueError, match="valid options: [(]none[)]"):
        widgets.build("bare", 1, 2, extra=1)


def test_factories_with_kwargs_are_not_checked(widgets):
    assert widgets.accepts_any("open") and not widgets.accepts_any("widget")
    assert widgets.build("open", 1, anything=2) == {"width": 1, "anything": 2}
    widgets.check("open", ["whatever"])


def test_extras_are_kept_read_only(widgets):
    entry = widgets.entry("gadget")
    assert entry.name == "gadget" and entry.obj is make_gadget and entry.extras["size"] == "large"
    with pytest.raises(TypeError):
        entry.extras["size"] = "small"  # type: ignore[index]
    assert dict(widgets.entry("widget").extras) == {}


def test_normalize_maps_every_spelling_to_one_key():
    splits = Registry("split", plural="splits", normalize=lambda name: name.replace("-", "_").lower())
    splits.register("mini_imagenet", description="mini")(make_gadget)
    assert "Mini-ImageNet" in splits and splits.describe("MINI-imagenet") == "mini"
    assert splits.entry("mini-imagenet").name == "mini_imagenet"
    with pytest.raises(ValueError, match="already registered"):
        splits.register("Mini-ImageNet")(Widget)


def test_unregister(widgets):
    widgets.unregister("gadget")
    assert widgets.names() == ["widget", "open"]
    with pytest.raises(ValueError, match="unknown widget 'gadget'"):
        widgets.unregister("gadget")
    widgets.register("gadget")(Widget)  # the name is free again
    assert widgets.get("gadget") is Widget
