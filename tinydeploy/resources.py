"""Where the package data lives: ``templates/``, ``firmware/`` and ``boards/``.

In an installed wheel they sit inside the package (``tinydeploy/_data/...``, see pyproject's
force-include); in a checkout or an editable install they are the top-level folders of the repo.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder ``name`` (one of templates, firmware, boards)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tinydeploy's {name}/ folder is missing from this installation")


def templates_dir() -> Path:
    return data_dir("templates")


def firmware_dir() -> Path:
    return data_dir("firmware")


def boards_dir() -> Path:
    return data_dir("boards")
