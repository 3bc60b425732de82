"""Read a model file into a :class:`Document`: the data plus where each part was written.

YAML and JSON are told apart by content (a JSON document starts with ``{``), not only by the
file's extension. Both are read through PyYAML's composer, which gives every node its line and
column; JSON is first checked with the ``json`` module so its syntax errors read as JSON's.

Safety: only plain data is built (no tags that construct objects: PyYAML's SafeLoader
resolvers), a key written twice in one mapping is an error (parsers silently keep the last),
and a file that is too large, too deeply nested, or whose aliases expand past a node budget
(the "billion laughs" alias bomb) is refused before any work is done on it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, SpecSyntaxError

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_NODES = 200_000  # values built, counting each expansion of an alias
MAX_DEPTH = 64

Path = tuple  # of str keys and int indexes


def format_path(path: Path) -> str:
    """``("layers", "hidden2", "units")`` -> ``layers.hidden2.units``; ints print as ``[i]``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


@dataclass
class Document:
    """A parsed model file.

    ``positions`` maps a path to the (line, column) of its value, ``key_positions`` maps a
    mapping entry's path to the (line, column) of its key; both 1-based.
    """

    data: Any
    file: str | None = None
    positions: dict = field(default_factory=dict)
    key_positions: dict = field(default_factory=dict)
    text: str | None = None

    def where(self, path: Path, key: bool = False) -> tuple[int | None, int | None]:
        """The position of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if key and path in self.key_positions:
                return self.key_positions[path]
            if path in self.positions:
                return self.positions[path]
            if not path:
                return (None, None)
            path = path[:-1]

    def diag(self, code: str, message: str, path: Path = (), *, key: bool = False, **kw) -> Diagnostic:
        line, col = self.where(path, key=key)
        return Diagnostic(code, message, format_path(path), self.file, line, col, **kw)


class _Builder:
    """Turns a composed YAML node tree into plain data, recording positions and limits."""

    def __init__(self, doc: Document, loader: yaml.SafeLoader) -> None:
        self.doc = doc
        self.loader = loader
        self.count = 0
        self.errors: list[Diagnostic] = []
        self._merged: dict = {}  # paths whose value came from a merge key (<<)

    def _mark(self, node) -> tuple[int, int]:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node, path: Path, depth: int, stack: tuple) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _LimitExceeded(
                f"the document expands to more than {MAX_NODES:,} values (aliases included); "
                "refusing to load it (an alias bomb, or a file far larger than a model needs)",
                node,
            )
        if depth > MAX_DEPTH:
            raise _LimitExceeded(f"the document nests deeper than {MAX_DEPTH} levels", node)
        if id(node) in stack:
            raise _LimitExceeded("an alias refers to a node that contains it (a recursive alias)", node)
        self.doc.positions.setdefault(path, self._mark(node))
        if isinstance(node, yaml.MappingNode):
            written = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<): merged pairs come first
            out: dict = {}
            stack = stack + (id(node),)
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    self.errors.append(
                        Diagnostic("E100", f"a mapping key must be a string; found {key!r}", format_path(path),
                                   self.doc.file, *self._mark(key_node))
                    )  # fmt: skip
                    continue
                key = str(key) if not isinstance(key, str) else key
                sub = path + (key,)
                if key in out and (id(key_node) not in written or self._merged.get(sub)):
                    # a key written here overrides one merged in (<<), as YAML specifies
                    self._merged.pop(sub, None)
                    self.doc.key_positions[sub] = self._mark(key_node)
                    out[key] = self.build(value_node, sub, depth + 1, stack)
                    continue
                if key in out:
                    first = self.doc.key_positions.get(sub, (None, None))
                    self.errors.append(
                        Diagnostic(
                            "E002",
                            f"duplicate key '{key}' (first written at line {first[0]}); "
                            "YAML parsers silently keep the last one, nnspec refuses the file",
                            format_path(sub),
                            self.doc.file,
                            *self._mark(key_node),
                        )
                    )
                    continue
                self.doc.key_positions[sub] = self._mark(key_node)
                if id(key_node) not in written:
                    self._merged[sub] = True
                out[key] = self.build(value_node, sub, depth + 1, stack)
            return out
        if isinstance(node, yaml.SequenceNode):
            stack = stack + (id(node),)
            return [self.build(v, path + (i,), depth + 1, stack) for i, v in enumerate(node.value)]
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, str) and node.style is None and _EXPONENT_NUMBER.fullmatch(value):
            # PyYAML follows YAML 1.1, whose floats need a dot: ``1e-6`` (as Keras users write
            # epsilons, and as JSON writes small numbers) would stay a string. YAML 1.2 and JSON
            # read a plain ``1e-6`` as a number, and so does nnspec; quoted, it stays a string.
            return float(value)
        return value


# A number with an exponent and no dot (``1e-6``, ``-2E+3``), which YAML 1.1 leaves a string.
_EXPONENT_NUMBER = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


class _LimitExceeded(Exception):
    def __init__(self, message: str, node) -> None:
        super().__init__(message)
        self.node = node


def looks_like_json(text: str) -> bool:
    return text.lstrip().startswith("{")


def _syntax_error(file, message, line=None, col=None, code="E001") -> SpecSyntaxError:
    return SpecSyntaxError([Diagnostic(code, message, "", file, line, col)])


def load_text(text: str, file: str | None = None) -> Document:
    """Parse model-file text. Raises :class:`SpecSyntaxError` with every problem found."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise _syntax_error(file, f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", code="E003")
    doc = Document(None, file, text=text)
    if looks_like_json(text):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise _syntax_error(file, f"invalid JSON: {e.msg}", e.lineno, e.colno) from None
        except RecursionError:
            raise _syntax_error(file, "the JSON nests too deeply", code="E003") from None
    # JSON strings cannot hold a raw tab, so outside strings tabs are only whitespace: make
    # them spaces (same columns) so PyYAML, which refuses tab indentation, reads the file.
    loader = yaml.SafeLoader(text.replace("\t", " ") if looks_like_json(text) else text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            msg = " ".join(p for p in (e.context, e.problem) if p)
            line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
            if looks_like_json(text):
                # Valid JSON that PyYAML's composer cannot read (tabs between tokens): use
                # the json module's data without positions rather than refuse the file.
                doc.data = _json_without_duplicates(text, file)
                return doc
            raise _syntax_error(file, f"invalid YAML: {msg}", line, col) from None
        except yaml.YAMLError as e:
            raise _syntax_error(file, f"invalid YAML: {e}") from None
        except RecursionError:
            raise _syntax_error(file, "the YAML nests too deeply", code="E003") from None
        if node is None:
            raise SpecSyntaxError([Diagnostic("E004", "the file is empty; expected a model mapping", "", file, 1, 1)])
        builder = _Builder(doc, loader)
        try:
            doc.data = builder.build(node, (), 0, ())
        except _LimitExceeded as e:
            line, col = e.node.start_mark.line + 1, e.node.start_mark.column + 1
            raise _syntax_error(file, str(e), line, col, code="E003") from None
        except yaml.constructor.ConstructorError as e:
            mark = e.problem_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
            raise _syntax_error(file, f"unsupported YAML value: {e.problem}", line, col) from None
        if builder.errors:
            raise SpecSyntaxError(builder.errors)
    finally:
        loader.dispose()
    if not isinstance(doc.data, dict):
        found = type(doc.data).__name__
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        raise SpecSyntaxError([Diagnostic("E004", f"expected a mapping at the top level of a model file; found {found}",
                                          "", file, line, col)])  # fmt: skip
    return doc


def _json_without_duplicates(text: str, file) -> Any:
    dups: list[str] = []

    def hook(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                dups.append(k)
            out[k] = v
        return out

    data = json.loads(text, object_pairs_hook=hook)
    if dups:
        raise SpecSyntaxError([Diagnostic("E002", f"duplicate key '{k}'", "", file) for k in dups])
    return data


def load_file(path: str | os.PathLike) -> Document:
    """Read and parse a model file; errors name the file."""
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
        if size > MAX_FILE_BYTES:
            raise _syntax_error(name, f"the file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit", code="E003")
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise _syntax_error(name, f"cannot read the file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _syntax_error(name, f"the file is not UTF-8 text (byte {e.start})") from None
    return load_text(text, name)
