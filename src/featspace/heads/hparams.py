"""Validation of head hyperparameters: one checker per kind of value, one wording for every head.

Each function returns the value in its canonical type (``real`` → float, ``integer`` → int) or raises a
``ValueError`` that names the hyperparameter, the accepted values and what was given, e.g.
``lam must lie in [0, 1], got 1.5``. ``owner`` (a head's registry name) prefixes the message when the
name alone would be ambiguous; ``hint`` adds what the value means (``"n of eq. 4"``). Booleans are never
accepted as numbers: ``True`` is an int in Python but a typo in a config.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["MAX_SCALE", "MAX_WEIGHT", "boolean", "choice", "integer", "real", "scale", "weight"]

#: the largest logit scale s accepted (the papers use s <= 64): s·cos enters the softmax, and an unbounded s
#: (1e308) turns the logits into ±inf and the loss into NaN
MAX_SCALE = 1e4
#: the largest weight of a loss term accepted (lam, softmax_weight, ...; the papers use at most a few units)
MAX_WEIGHT = 1e4

V = TypeVar("V")


def _fail(name: str, requirement: str, value: object, owner: str, hint: str) -> ValueError:
    prefix = f"{owner}: " if owner else ""
    note = f" ({hint})" if hint else ""
    return ValueError(f"{prefix}{name} must {requirement}{note}, got {value!r}")


def real(name: str, value: object, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
         high_open: bool = False, owner: str = "", hint: str = "") -> float:
    """``value`` as a float if it is a finite real number in the interval from ``low`` to ``high``
    (closed ends unless ``low_open`` / ``high_open``; an infinite end is always open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise _fail(name, "be a finite real number", value, owner, hint)
    number = float(value)
    if number < low or (low_open and number == low) or number > high or (high_open and number == high):
        opening = "(" if low_open or low == -math.inf else "["
        closing = ")" if high_open or high == math.inf else "]"
        raise _fail(name, f"lie in {opening}{low:g}, {high:g}{closing}", value, owner, hint)
    return number


def integer(name: str, value: object, *, low: int | None = None, high: int | None = None, owner: str = "",
            hint: str = "") -> int:
    """``value`` as an int if it is an integer (not a bool, not a float such as 2.0) in ``[low, high]``."""
    bounds = "".join([f" >= {low}" if low is not None else "", " and" if low is not None and high is not None
                      else "", f" <= {high}" if high is not None else ""])
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or (low is not None and value < low) or (high is not None and value > high):
        raise _fail(name, f"be an int{bounds}", value, owner, hint)
    return int(value)


def choice(name: str, value: V, options: Sequence[object], *, owner: str = "", hint: str = "") -> V:
    """``value`` unchanged if it is one of ``options``."""
    if value not in options:
        raise _fail(name, f"be one of {', '.join(map(repr, options))}", value, owner, hint)
    return value


def boolean(name: str, value: object, *, owner: str = "", hint: str = "") -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise _fail(name, "be a bool (True or False)", value, owner, hint)
    return value


def scale(name: str, value: object, *, owner: str = "", hint: str = "") -> float:
    """A logit scale: a finite real in (0, MAX_SCALE]."""
    return real(name, value, low=0.0, low_open=True, high=MAX_SCALE, owner=owner, hint=hint)


def weight(name: str, value: object, *, high: float = MAX_WEIGHT, owner: str = "", hint: str = "") -> float:
    """The weight of a loss term: a finite real in [0, high] (at most MAX_WEIGHT)."""
    return real(name, value, low=0.0, high=min(high, MAX_WEIGHT), owner=owner, hint=hint)
