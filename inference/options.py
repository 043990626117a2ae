"""Validation of string options against a registry, with errors that list the choices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def choose(registry: Mapping[str, T], name: str, *, what: str) -> T:
    """Look ``name`` up in ``registry``; an unknown name raises a ``ValueError``
    that lists every valid choice.

    :param registry: the dict from option name to value (a class, a factory, ...).
    :param name: the option the user asked for.
    :param what: what the option is, for the message (``"estimator"``, ``"prior"``).

    >>> choose({"a": 1, "b": 2}, "b", what="letter")
    2
    >>> choose({"a": 1}, "z", what="letter")
    Traceback (most recent call last):
    ...
    ValueError: unknown letter 'z'; valid choices: 'a'
    """
    try:
        return registry[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(key) for key in registry)
        raise ValueError(f"unknown {what} {name!r}; valid choices: {valid}") from None
