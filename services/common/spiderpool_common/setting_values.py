"""Reading one setting's value into its declared type: the conversion both services share.

A setting arrives as text (a flag, a ``SPIDERPOOL_*`` variable) or as a YAML value (a
``--config`` file). Owns turning either into the dataclass field's type (``bool``,
``int``, ``float`` or ``str``) or refusing it with one line that names the setting. A
YAML value is taken only where its type means the same thing (a YAML boolean for a bool,
an integer for an int or a float, a string for anything read from text); nothing is
coerced from another type: a list, a mapping, a null, a boolean where a number is wanted,
a number where a text is wanted are refused instead of surfacing later as a traceback or
as a setting that silently means something else (``str([1])``, ``float(True)``).
Numbers must be finite: a NaN deadline compares false with everything.
"""

from __future__ import annotations

import math
from collections.abc import Callable

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_YAML_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
}


def _describe(value: object) -> str:
    return f"{_YAML_TYPE_NAMES.get(type(value), type(value).__name__)} ({value!r})"


def convert(name: str, kind: str, value: object) -> bool | int | float | str:
    """``value`` as the setting ``name`` of type ``kind``; ``ValueError("setting NAME: ...")``."""
    try:
        return _CONVERTERS[kind](value)
    except ValueError as exc:
        raise ValueError(f"setting {name}: {exc}") from None


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"{value!r} is not a boolean (true or false)")
    raise ValueError(f"expected a boolean (true or false), got {_describe(value)}")


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
    raise ValueError(f"expected an integer, got {_describe(value)}")


def _to_float(value: object) -> float:
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"expected a number, got {_describe(value)}")  # noqa: TRY004 (one error type for callers)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {_describe(value)}")


_CONVERTERS: dict[str, Callable[[object], bool | int | float | str]] = {
    "bool": _to_bool,
    "int": _to_int,
    "float": _to_float,
    "str": _to_str,
}
