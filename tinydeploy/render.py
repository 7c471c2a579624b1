"""The render stage: the model as C sources, and the output folder written all-or-nothing.

Everything a firmware project needs to know about the model is generated here from the Jinja
templates in ``templates/common/``: ``model_data.h/.cc`` (the exact .tflite bytes),
``model_settings.h`` (arena size, tensor shapes and quantization) and ``model_info.c`` (the
handshake's identity of the model). Project kinds (PlatformIO, bare-metal) add their own files.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from tinydeploy import __version__
from tinydeploy.analyze import Analysis
from tinydeploy.boards import BoardProfile, ExternalRam
from tinydeploy.errors import InputError
from tinydeploy.output import staged_output  # noqa: F401 - the render stage's output folder
from tinydeploy.resources import templates_dir

# enum td_dtype in firmware/td_runtime.h
DTYPE_CODES = {"int8": "TD_INT8", "uint8": "TD_UINT8", "int16": "TD_INT16", "int32": "TD_INT32",
               "float32": "TD_FLOAT32"}
_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float
for goto if inline int long register restrict return short signed sizeof static struct switch
typedef union unsigned void volatile while alignas alignof bool class namespace new delete
template this true false""".split())


def c_identifier(name: str, suffix: str = "") -> str:
    """A valid, readable C identifier for a model name (``'my-model v2'`` -> ``my_model_v2``)."""
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_")
    ident = re.sub(r"_+", "_", ident) or "model"
    if ident[0].isdigit():
        ident = "m_" + ident
    if ident in _C_KEYWORDS or keyword.iskeyword(ident) or ident.startswith("td_"):
        ident = "model_" + ident
    return ident + suffix


_COMMENT_SAFE = re.compile(r"[A-Za-z0-9 _.,:;+=()\[\]{}<>!#$%&'@^|~-]")


def c_comment(text, limit: int = 160) -> str:
    """``text`` made safe inside a C/C++ comment of either kind, and in an INI comment.

    Names come from the user (a model file name, tensor names inside the .tflite): a newline would
    end a ``//`` comment and start code, ``*/`` would end a block comment, a backslash or the
    trigraph ``??/`` at the end would splice the next line into the comment. Only plain printable
    ASCII without ``* / \\ ? " ` `` passes; anything else shows as ``<U+XXXX>``, and long names are
    cut with ``...``.
    """
    out = "".join(c if _COMMENT_SAFE.fullmatch(c) else "/" if c == "/" else f"<U+{ord(c):04X}>"
                  for c in str(text))
    return out if len(out) <= limit else out[:limit - 3] + "..."


def environment(kind: str) -> jinja2.Environment:
    """Jinja environment over ``templates/<kind>``: undefined variables are errors, not blanks.

    Every user-given name that reaches generated C goes through the ``c_comment`` filter (in
    comments) or :func:`c_identifier` (as a symbol): it is never pasted raw.
    """
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir() / kind)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=False)
    env.filters["c_comment"] = c_comment
    env.filters["c_identifier"] = c_identifier
    return env


def c_array_body(data: bytes, per_line: int = 16) -> str:
    return "\n".join("  " + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ","
                     for i in range(0, len(data), per_line))


_SECTION = re.compile(r'section\s*\(\s*"([^"\\]+)"\s*\)')
_ONE_LINE_C = re.compile(r"[ -~]+")


def _c_fragment(text: str, what: str, board: BoardProfile) -> str:
    """A piece of C from a board file (an attribute, an allocator's name): one line of printable
    ASCII that cannot end a comment or splice lines, since it is pasted into model_settings.h."""
    if (not _ONE_LINE_C.fullmatch(text) or "/*" in text or "*/" in text or "//" in text
            or text.endswith("\\")):
        raise InputError(f"the [external_ram] {what} of board {board.id} ({text!r}) is not one "
                         "line of plain C", f"fix {board.source}")
    return text


def external_section(board: BoardProfile) -> str:
    """The linker section an emulated board's external RAM attribute names (the bare-metal linker
    script places it at the region's address); InputError for what bare metal cannot do."""
    ext = board.external_ram
    fix = f"fix {board.source}: an emulated board's arena goes to external RAM by a section attribute"
    if ext.placement != "static":
        raise InputError(f"board {board.id} places its external RAM arena with an allocator "
                         f"({ext.allocator}), which bare-metal firmware does not have", fix)
    m = _SECTION.search(ext.attribute)
    if m is None or not re.fullmatch(r"\.[\w.]+", m.group(1)):
        raise InputError(f"the [external_ram] attribute of board {board.id} ({ext.attribute!r}) "
                         "names no linker section like section(\".ext_ram\")", fix)
    return m.group(1)


@dataclass
class ModelSources:
    """The inputs of the model-specific C files."""

    model_name: str
    model_bytes: bytes
    analysis: Analysis
    board: BoardProfile
    runtime: str
    arena_bytes: int          # what the firmware reserves
    arena_needed: int         # what the runtime was measured/planned to need
    arena_note: str
    # the board's external RAM when the arena goes there (check: it does not fit internal RAM)
    external_ram: ExternalRam | None = None
    # a real board's firmware built with TD_PROFILE (it answers OP_TIMINGS: validate --profile)
    profile: bool = False

    @property
    def ident(self) -> str:
        return c_identifier(self.model_name, "_tflite")

    @property
    def arena_placement(self) -> str | None:
        """None (internal RAM), or how the arena reaches external RAM: "static" (TD_ARENA_ATTR) or
        "heap" (TD_ARENA_ALLOC, through td_arena_alloc() at td_model_init())."""
        return None if self.external_ram is None else self.external_ram.placement

    def _external_context(self) -> dict:
        ext, board = self.external_ram, self.board
        if ext is None:
            return {"external_ram": None}
        if board.emulated:
            external_section(board)  # refuses what the bare-metal linker script cannot place
        include = ext.include
        if include and not re.fullmatch(r"[\w./+-]+", include):
            raise InputError(f"the [external_ram] include of board {board.id} ({include!r}) is not a "
                             "header file name", f"fix {board.source}")
        return {"external_ram": ext, "arena_placement": ext.placement,
                "arena_attribute": _c_fragment(ext.attribute, "attribute", board)
                if ext.placement == "static" else "",
                "arena_allocator": _c_fragment(ext.allocator, "allocator", board)
                if ext.placement == "heap" else "",
                "arena_include": include,
                "arena_setup": _c_fragment(ext.setup.rstrip().rstrip(";"), "setup", board)
                if ext.placement == "heap" and ext.setup.strip() else "",
                # the Arduino framework defines its attributes (EXTMEM) in headers Arduino.h pulls in
                "framework_header": "" if board.emulated else "Arduino.h"}

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_bytes).hexdigest()

    def context(self) -> dict:
        a = self.analysis
        return {
            "version": __version__, "model_name": self.model_name, "ident": self.ident,
            "size": len(self.model_bytes), "sha256": self.sha256, "board": self.board,
            "runtime": self.runtime, "arena_bytes": self.arena_bytes,
            "arena_needed": self.arena_needed, "arena_note": self.arena_note,
            "inputs": a.inputs, "outputs": a.outputs, "num_ops": len(a.ops),
            "num_distinct_ops": len(a.distinct_ops), "ops": a.distinct_ops,
            "dtype_codes": DTYPE_CODES, "model_hash_hex": self.sha256,
            "hash_bytes": ", ".join(f"0x{b:02x}" for b in bytes.fromhex(self.sha256)),
            "profile": self.profile,
        } | self._external_context()


def render_model_sources(src: ModelSources, dest: Path) -> list[Path]:
    """Write model_data.h/.cc, model_settings.h and model_info.c into ``dest``."""
    env = environment("common")
    ctx = src.context()
    unsupported = [t.dtype for t in (*src.analysis.inputs, *src.analysis.outputs)
                   if t.dtype not in DTYPE_CODES]
    if unsupported:
        raise InputError(f"model inputs/outputs of type {unsupported[0]} are not supported",
                         "quantize with int8 (or float32) inputs and outputs")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for template, name, extra in (("model_data.h.j2", "model_data.h", {}),
                                  ("model_data.cc.j2", "model_data.cc",
                                   {"array_body": c_array_body(src.model_bytes)}),
                                  ("model_settings.h.j2", "model_settings.h", {}),
                                  ("model_info.c.j2", "model_info.c", {})):
        path = dest / name
        path.write_text(env.get_template(template).render(**ctx, **extra))
        written.append(path)
    return written


def write_op_resolver(dest: Path, model_name: str, ops: list[str]) -> Path:
    """Write ``op_resolver.h``: a MicroMutableOpResolver registering exactly the model's ops (TFLM)."""
    from tinydeploy.tflm_ops import resolver_calls

    path = Path(dest) / "op_resolver.h"
    path.write_text(environment("common").get_template("op_resolver.h.j2").render(
        model_name=model_name, resolver_calls=resolver_calls(ops)))
    return path
