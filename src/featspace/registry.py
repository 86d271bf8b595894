"""The one registry implementation: named, buildable things (heads, backbones, datasets, few-shot splits).

A :class:`Registry` maps names to classes or factory functions, filled by a decorator as in timm::

    HEADS = Registry("head", fixed=("embedding_dim", "num_classes"), parameter="hyperparameter")

    @HEADS.register("lace")
    class LACEHead(Head): ...

    HEADS.build("lace", 64, 10, temperature=0.5)

``fixed`` names the leading arguments every caller supplies (a head's ``embedding_dim`` and
``num_classes``); the other arguments of the signature are the entry's *parameters*, which ``build``
checks before calling, so a misspelt option fails with a ``ValueError`` listing the valid ones instead of a
``TypeError`` from deep inside a constructor. Pure Python (``inspect``), no torch: anything may import it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["Entry", "Registry", "defaults_of", "parameters_of"]

T = TypeVar("T", bound=Callable[..., Any])

_SKIPPED_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def parameters_of(obj: Callable[..., Any], fixed: Sequence[str] = ()) -> list[str]:
    """Names of the parameters of ``obj``'s signature in declaration order, without ``self``, ``*args``,
    ``**kwargs`` and the ``fixed`` ones the caller supplies."""
    # inspect.signature of a class is its constructor's, already without ``self``; the check on "self"
    # covers an unbound method passed as the factory
    return [name for name, p in inspect.signature(obj).parameters.items()
            if name != "self" and name not in fixed and p.kind not in _SKIPPED_KINDS]


def defaults_of(obj: Callable[..., Any], fixed: Sequence[str] = ()) -> dict[str, Any]:
    """The declared defaults of ``obj``'s parameters (as :func:`parameters_of`); those without one are left out."""
    params = inspect.signature(obj).parameters
    return {name: params[name].default for name in parameters_of(obj, fixed)
            if params[name].default is not inspect.Parameter.empty}


def _first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


@dataclass(frozen=True)
class Entry:
    """One registered thing: its ``name``, the class or factory ``obj``, a one-line ``description``, and
    ``extras``: whatever else its registry records about it (e.g. a backbone's smallest image size)."""

    name: str
    obj: Callable[..., Any]
    description: str
    extras: Mapping[str, Any] = field(default_factory=dict)


class Registry:
    """Names → classes or factories of one ``kind`` ("head", "backbone", "dataset", ...).

    fixed: the leading arguments callers pass themselves; they are not parameters of an entry.
    plural: the kind in plural, for messages (default ``kind + "s"``).
    parameter: what a parameter is called in messages ("hyperparameter", "option"; default "parameter").
    normalize: maps a name as written to the registered key (e.g. ``"mini-ImageNet"`` → ``"mini_imagenet"``);
        applied on registration and on every look-up. Default: names are used as given.

    ``names()`` and iteration are in registration order.
    """

    def __init__(self, kind: str, *, fixed: Sequence[str] = (), plural: str | None = None,
                 parameter: str = "parameter", normalize: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.fixed = tuple(fixed)
        self.parameter = parameter
        self._normalize = normalize
        self._entries: dict[str, Entry] = {}

    # ------------------------------------------------------------------------------------- filling
    def register(self, name: str, *, description: str | None = None, **extras: Any) -> Callable[[T], T]:
        """Decorator: register a class or factory function under ``name`` and return it unchanged.

        description: one line for listings (default: the first line of the object's docstring).
        extras: anything else to keep with the entry, read back through :meth:`entry`.
        Registering the same object again is a no-op; a different object under a taken name is a
        ``ValueError``.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        key = self._key(name)

        def decorate(obj: T) -> T:
            if not callable(obj):
                raise TypeError(f"{self.kind} {name!r}: expected a class or a function, got {obj!r}")
            taken = self._entries.get(key)
            if taken is not None and taken.obj is not obj:
                raise ValueError(f"{self.kind} name {key!r} is already registered by "
                                 f"{getattr(taken.obj, '__qualname__', repr(taken.obj))}")
            text = _first_doc_line(obj) if description is None else description
            self._entries[key] = Entry(key, obj, text, MappingProxyType(dict(extras)))
            return obj

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and interactive sessions that registered something temporary)."""
        del self._entries[self.entry(name).name]

    # ------------------------------------------------------------------------------------- reading
    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._entries)

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` of ``name``; ``ValueError`` listing the valid names otherwise."""
        entry = self._entries.get(self._key(name)) if isinstance(name, str) else None
        if entry is None:
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self.names())}")
        return entry

    def get(self, name: str) -> Callable[..., Any]:
        """The class or factory registered as ``name``."""
        return self.entry(name).obj

    def describe(self, name: str) -> str:
        """The one-line description of ``name``."""
        return self.entry(name).description

    def parameters(self, name: str) -> list[str]:
        """The parameters of ``name`` (its signature without the ``fixed`` arguments), in order."""
        return parameters_of(self.get(name), self.fixed)

    def defaults(self, name: str) -> dict[str, Any]:
        """The declared defaults of ``name``'s parameters."""
        return defaults_of(self.get(name), self.fixed)

    def accepts_any(self, name: str) -> bool:
        """True when ``name``'s signature takes ``**kwargs``, so :meth:`build` cannot check parameter names."""
        return any(p.kind is inspect.Parameter.VAR_KEYWORD
                   for p in inspect.signature(self.get(name)).parameters.values())

    def check(self, name: str, params: Iterable[str]) -> None:
        """``ValueError`` naming the parameters ``name`` does not take, and listing those it does."""
        if self.accepts_any(name):
            return
        valid = self.parameters(name)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown {self.kind} {self.parameter}(s) {', '.join(unknown)} for {self.entry(name).name!r}; "
                f"valid {self.parameter}s: {', '.join(valid) or '(none)'}")

    def build(self, name: str, *args: Any, **params: Any) -> Any:
        """``get(name)(*args, **params)`` after checking ``params`` against its signature (:meth:`check`)."""
        self.check(name, params)
        return self.get(name)(*args, **params)

    # ------------------------------------------------------------------------------------ protocol
    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"

    def _key(self, name: str) -> str:
        return self._normalize(name) if self._normalize is not None else name
