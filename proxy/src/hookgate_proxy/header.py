"""Parsing of the `x-litellm-disable-callbacks` request header."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DISABLE_HEADER", "parse_disable_header"]

DISABLE_HEADER = "x-litellm-disable-callbacks"


def parse_disable_header(values: Iterable[str]) -> tuple[str, ...]:
    """Return the callback names in every line of the header, in order, each once.

    Names are compared case-insensitively, so they are lowercased; whitespace around
    a name is trimmed and empty items (`a,,b`, a trailing comma) are skipped. Several
    header lines add up: `langfuse` on one line and `datadog` on another disable both.
    """
    # A dict keeps the first-seen order and makes each duplicate check O(1): the
    # header is chosen by the client, so a list lookup here would be quadratic.
    names: dict[str, None] = {}
    for value in values:
        for item in value.split(","):
            name = item.strip().lower()
            if name:
                names[name] = None
    return tuple(names)
