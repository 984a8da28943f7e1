"""Item text templates (``model.content.text_template``): which item fields go into the string an encoder reads.

A template is a Python format string over the fields ``{text}`` (the item's text, e.g. its title),
``{attributes}`` (e.g. category path and brand) and ``{item_id}`` (the raw item id), for example
``"{text}. {attributes}"``. Format specs work as in ``str.format`` (``"{text:.200}"`` keeps the first
200 characters). A missing value (None or NaN in the data) renders as the empty string.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from translearn.errors import ConfigError

KEY = "model.content.text_template"
FIELDS = ("text", "attributes", "item_id")


def template_fields(template: str) -> tuple[str, ...]:
    """The fields ``template`` uses, in order of first use; ``ConfigError`` naming ``model.content.text_template``
    for a malformed template, an unknown field, or a template that uses no field at all."""
    if not isinstance(template, str):
        raise ConfigError(f"{KEY}: expected a string such as '{{text}}', got {template!r}", config_key=KEY)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(f"{KEY}={template!r} is not a valid format string ({err})", config_key=KEY) from None
    used: list[str] = []
    for _, field, _, _ in parts:
        if field is None:
            continue
        if field not in FIELDS:
            shown = "{" + field + "}"
            raise ConfigError(f"{KEY}={template!r}: unknown field {shown}; expected "
                              + ", ".join("{" + f + "}" for f in FIELDS), config_key=KEY)
        if field not in used:
            used.append(field)
    if not used:
        raise ConfigError(f"{KEY}={template!r} uses no item field, so every item would get the same vector; "
                          "expected one of " + ", ".join("{" + f + "}" for f in FIELDS), config_key=KEY)
    return tuple(used)


def _plain(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def render(template: str, columns: dict[str, Sequence[Any] | np.ndarray]) -> list[str]:
    """One string per item: ``template`` filled from ``columns`` (field name -> [n] values), which must hold
    every field the template uses."""
    fields = template_fields(template)
    n = len(next(iter(columns.values()))) if columns else 0
    values = {f: [_plain(v) for v in columns[f]] for f in fields}
    try:
        return [template.format_map({f: values[f][i] for f in fields}) for i in range(n)]
    except (ValueError, TypeError) as err:  # e.g. a numeric format spec such as {text:d}
        raise ConfigError(f"{KEY}={template!r} cannot format the item fields ({err})", config_key=KEY) from None
