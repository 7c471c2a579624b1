"""Tiny helpers that format C99 definitions (const arrays, designated-initializer structs)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

_PER_LINE = 24


def c_array(ctype: str, name: str, values: Iterable, *, static: bool = True) -> str:
    """``static const ctype name[n] = {...};`` with a fixed number of values per line."""
    vals = [_c_number(v) for v in np.asarray(list(values) if not isinstance(values, np.ndarray)
                                             else values).ravel()]
    lines = [", ".join(vals[i:i + _PER_LINE]) for i in range(0, len(vals), _PER_LINE)]
    body = ",\n    ".join(lines) if lines else "0"
    prefix = "static const" if static else "const"
    return f"{prefix} {ctype} {name}[{max(len(vals), 1)}] = {{\n    {body}\n}};\n"


def c_aligned_array(name: str, values: Iterable) -> str:
    """An int8 array aligned to 4 bytes, portably: the array shares a union with an int32_t (the
    data is ``name.v``). Kernels may then load its words two at a time (LDRD)."""
    body = c_array("int8_t", "v", values, static=False)
    vals = body[body.index("{") + 1:body.rindex("}")].strip()
    n = body[body.index("[") + 1:body.index("]")]
    return (f"static const union {{\n    int32_t align;\n    int8_t v[{n}];\n}} {name} = "
            f"{{.v = {{\n    {vals}\n}}}};\n")


def c_struct_array(ctype: str, name: str, rows: Iterable[Iterable]) -> str:
    """``static const ctype name[n] = {{...}, ...};``: one brace-enclosed row per element."""
    body = ",\n    ".join("{" + ", ".join(_c_value(v) for v in row) + "}" for row in rows)
    n = body.count("{")
    return f"static const {ctype} {name}[{max(n, 1)}] = {{\n    {body or '{0}'}\n}};\n"


def c_struct(ctype: str, name: str, fields: Mapping[str, object]) -> str:
    """``static const ctype name = {.field = value, ...};`` (values already C text or numbers)."""
    body = "".join(f"    .{k} = {_c_value(v)},\n" for k, v in fields.items())
    return f"static const {ctype} {name} = {{\n{body}}};\n"


def _c_value(v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(_c_value(x) for x in v) + "}"
    return _c_number(v)


def _c_number(v: object) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (float, np.floating)):
        return f"{float(v)!r}f" if isinstance(v, np.float32) else repr(float(v))
    iv = int(v)
    if iv == -(1 << 31):
        return "(-2147483647 - 1)"  # INT32_MIN has no literal of type int
    return str(iv)


_SIZEOF = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "int32_t": 4, "float": 4, "int64_t": 8,
           "td_channel_t": 12, "td_stage_t": 8}
_ARRAY_DECL = re.compile(r"^(?:static )?const (\w+) \w+\[(\d+)\]", re.M)
_ALIGNED_DECL = re.compile(r"^static const union \{\n    int32_t align;\n    int8_t v\[(\d+)\]")


def decl_bytes(decl: str) -> int:
    """Approximate flash bytes of one definition made by c_array / c_struct (4 per struct field,
    flattening nested braces)."""
    m = _ALIGNED_DECL.match(decl)
    if m:
        return int(m.group(1))
    m = _ARRAY_DECL.match(decl)
    if m:
        return _SIZEOF.get(m.group(1), 4) * int(m.group(2))
    fields = [line for line in decl.splitlines() if line.startswith("    .")]
    return 4 * sum(max(1, line.count(",") if "{" in line else 1) for line in fields)


def comment_text(text: str, limit: int = 120) -> str:
    """Text safe inside a C comment: no comment terminator, no newlines, bounded length."""
    safe = " ".join(str(text).split()).replace("*/", "* /").replace("/*", "/ *")
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."
