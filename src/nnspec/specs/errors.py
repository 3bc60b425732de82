"""Diagnostics and the one exception hierarchy of nnspec.

Every problem found in a model file is a :class:`Diagnostic`: a stable code, a severity, the
file, line and column, the path inside the document (``layers.hidden2.units``), a message that
says what was expected and what was found, and an optional hint (a did-you-mean). A stage that
finds problems collects them all and raises one :class:`SpecError` carrying the list, so
independent errors in one file are all reported.

Codes are stable; the table lives in ``docs/errors.md``:

======  =====================================================================
E000    nnspec failed on this file (a bug: please report it); never a traceback
E001    the file cannot be read, or is neither YAML nor JSON (syntax error)
E002    a key appears twice in one mapping
E003    the file is too large, too deep, or expands past the alias limit
E004    the document is not a mapping at the top level
E010    ``format`` is missing or names an unknown version
E100    a value has the wrong type
E101    an unknown key (a misspelt parameter)
E102    a required key is missing
E103    a value is out of range, or is not one of the allowed values
E104    an unknown name: layer type, activation, initializer, regularizer, constraint
E105    an invalid node or input name
E106    a custom layer's ``call`` or a custom loss is not a valid expression
E200    an edge refers to a node or input that does not exist
E201    a node is fed twice (by two edges or two chains)
E202    the edges form a cycle (the path is given)
E203    a layer receives the wrong number of inputs, or a port that does not exist
E204    an output cannot be reached from the inputs, or a node has no input
E205    a shared layer (``shares``) refers to a node that is not a layer call
E206    a ``models`` reference is unknown, recursive or unreadable
E300    shapes do not fit a layer's rule (names the edge, the layer and the shapes)
E301    a layer or the model would hold more parameters than nnspec allows (2**31)
W200    a layer that no output depends on (warning)
======  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    path: str = ""  # dotted path inside the document: layers.hidden2.units, edges[2]
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    hint: str | None = None  # "did you mean 'units'?"
    expected: str | None = None
    found: str | None = None

    @property
    def severity(self) -> str:
        return "warning" if self.code.startswith("W") else "error"

    def location(self) -> str:
        parts = [self.file or "<string>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def format(self) -> str:
        """``FILE:LINE:COL: CODE path: message; hint``, the line the CLI prints."""
        where = f"{self.path}: " if self.path else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.location()}: {self.code} {where}{self.message}{hint}"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
            "expected": self.expected,
            "found": self.found,
        }

    def __str__(self) -> str:
        return self.format()


class NnspecError(Exception):
    """Base of every error nnspec raises on purpose."""


@dataclass
class SpecError(NnspecError):
    """A model file has problems. ``diagnostics`` holds every one found (errors first).

    The first error's fields are exposed directly (``err.code``, ``err.line``...) for the
    common case of one problem.
    """

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def first(self) -> Diagnostic:
        errs = self.errors
        return errs[0] if errs else self.diagnostics[0]

    code = property(lambda self: self.first.code)
    file = property(lambda self: self.first.file)
    line = property(lambda self: self.first.line)
    column = property(lambda self: self.first.column)
    path = property(lambda self: self.first.path)
    expected = property(lambda self: self.first.expected)
    found = property(lambda self: self.first.found)
    hint = property(lambda self: self.first.hint)

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class SpecSyntaxError(SpecError):
    """The file is not valid YAML/JSON, has duplicate keys, or exceeds the size limits."""


class SchemaError(SpecError):
    """The document does not follow the model-file schema (types, names, ranges)."""


class GraphError(SpecError):
    """The layers and edges do not form a valid graph."""


class ShapeMismatchError(SpecError):
    """Shapes do not fit the layers they flow into."""


class InputError(NnspecError, ValueError):
    """An array given to a model does not fit its input (raised by the runtime)."""


class WeightsError(NnspecError, ValueError):
    """A weights file or list does not fit the model."""


class KerasConfigError(NnspecError, ValueError):
    """A Keras model config that nnspec cannot read (names the model, the layer and why)."""


def did_you_mean(name: str, candidates) -> str | None:
    """A hint naming the closest candidate, or None when nothing is close."""
    import difflib

    cands = [c for c in candidates if isinstance(c, str)]
    lowered = {c.lower(): c for c in cands}
    if isinstance(name, str) and name.lower() in lowered and lowered[name.lower()] != name:
        return f"did you mean '{lowered[name.lower()]}'?"
    match = difflib.get_close_matches(str(name), cands, n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None
