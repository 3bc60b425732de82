"""Versions of the model-file format, and the migrations between them.

A model file names its version in ``format``. The current version is :data:`CURRENT`; files
written for an older version are migrated, one step at a time, by the functions registered in
:data:`MIGRATIONS` before validation, so the rest of nnspec only ever sees the current format.
A migration maps the raw document data of one version to the next and must keep every path
that still exists, so that error positions stay right.

``nnspec/1`` is the first released version: there is nothing to migrate yet. When the format
changes incompatibly, add ``"nnspec/1": ("nnspec/2", _v1_to_v2)`` here, bump ``CURRENT``, and
add a golden test with a version-1 file.
"""

from __future__ import annotations

from typing import Callable

CURRENT = "nnspec/1"
FORMAT_PREFIX = "nnspec/"

# version -> (next version, function data -> data)
MIGRATIONS: dict[str, tuple[str, Callable[[dict], dict]]] = {}

KNOWN = (CURRENT, *MIGRATIONS)


def migrate(data: dict, version: str) -> dict:
    """Bring ``data`` written for ``version`` up to :data:`CURRENT`."""
    seen = set()
    while version != CURRENT:
        if version in seen or version not in MIGRATIONS:
            raise KeyError(version)
        seen.add(version)
        version, step = MIGRATIONS[version]
        data = step(data)
        data["format"] = version
    return data
