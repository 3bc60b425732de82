"""The compiler: graph, shape inference, lowering to a plan.

``analyze(doc)`` runs every check on a loaded document and returns the typed graph;
``lower(typed)`` turns it into a :class:`~nnspec.compiler.plan.Plan`.
"""

from __future__ import annotations

from ..specs.load import Document
from ..specs.validate import validate_document
from .graph import Graph, build_graph
from .shapes import TypedGraph, infer_types


def analyze(doc: Document) -> TypedGraph:
    """Validate ``doc`` against the schema, build its graph and type it.

    Raises a :class:`~nnspec.specs.errors.SpecError` subclass listing every problem found at
    the first stage that finds any (schema, then graph, then shapes). Warnings are on
    ``typed.graph.warnings``.
    """
    validate_document(doc)
    graph = build_graph(doc)
    return infer_types(graph)


__all__ = ["analyze", "Graph", "TypedGraph", "build_graph", "infer_types"]
