"""Jobber GraphQL documents: a field tree that renders itself and counts its query cost as Jobber does.

Cost rules (https://developer.getjobber.com/docs/using_jobbers_api/api_rate_limits): 1 point per field,
``edges``/``nodes``/``node`` free, a connection's nodes times ``first`` (100 when omitted). Documents are
``query``/``mutation`` operations with typed variables
(https://developer.getjobber.com/docs/using_jobbers_api/api_queries_and_mutations). The answers are read
into :class:`GraphQLResult` and, per aliased mutation, :class:`MutationOutcome`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Field:
    """One field of a GraphQL selection, rendered and costed the way Jobber counts it.

    ``args`` holds GraphQL text per argument (``"$v0"``, ``"5"``); a ``first`` argument makes
    the field a connection whose ``nodes`` cost is multiplied by it.
    """

    name: str
    children: tuple[Field, ...] = ()
    args: tuple[tuple[str, str], ...] = ()
    alias: str | None = None

    def render(self) -> str:
        head = f"{self.alias}: {self.name}" if self.alias else self.name
        if self.args:
            head += "(" + ", ".join(f"{k}: {v}" for k, v in self.args) + ")"
        if self.children:
            head += " { " + " ".join(c.render() for c in self.children) + " }"
        return head

    def cost(self) -> int:
        """1 per field; ``nodes``/``edges``/``node`` free; connections: ``first`` x the nodes' cost."""
        inner = sum(c.cost() for c in self.children)
        if self.name in ("nodes", "edges", "node"):
            return inner
        first = dict(self.args).get("first")
        if first is not None and first.isdigit():
            paged = sum(c.cost() for c in self.children if c.name in ("nodes", "edges"))
            return int(first) * paged + (inner - paged)
        return 1 + inner


def f(name: str, *children: Field | str, alias: str | None = None, **args: Any) -> Field:
    """Shorthand: ``f("clients", f("nodes", "id"), first=5, searchTerm="$t0")``."""
    kids = tuple(c if isinstance(c, Field) else Field(c) for c in children)
    return Field(name, kids, tuple((k, str(v)) for k, v in args.items()), alias)


def document(kind: str, name: str, variables: Mapping[str, str], fields: Sequence[Field]) -> str:
    """``kind name($v: Type, ...) { fields }`` (``kind`` is ``query`` or ``mutation``)."""
    declared = ", ".join(f"${k}: {t}" for k, t in variables.items())
    head = f"{kind} {name}" + (f"({declared})" if declared else "")
    return head + " { " + " ".join(fl.render() for fl in fields) + " }"


USER_ERRORS = f("userErrors", "message", "path")
ADDRESS = f("address", "street1", "city", "province", "postalCode")
CLIENT_MATCH_FIELDS = (
    f("id"),
    f("firstName"),
    f("lastName"),
    f("companyName"),
    f("emails", "address"),
    f("phones", "number"),
)


def client_fields(properties: int) -> tuple[Field, ...]:
    """Client fields the sync reads; with ``properties`` > 0 also its first service properties."""
    if properties <= 0:
        return CLIENT_MATCH_FIELDS
    return (*CLIENT_MATCH_FIELDS, f("clientProperties", f("nodes", "id", ADDRESS), first=properties))


# ---------------------------------------------------------------------------- results


@dataclass
class GraphQLResult:
    """One GraphQL answer: ``data`` (None when nothing could be returned), ``errors``, cost."""

    data: dict[str, Any] | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)

    def errors_for(self, alias: str) -> list[str]:
        """Messages of the errors whose path starts at ``alias``."""
        return [
            str(e.get("message") or "error")
            for e in self.errors
            if isinstance(e, Mapping) and (e.get("path") or [None])[0] == alias
        ]


@dataclass
class MutationOutcome:
    """The outcome of one aliased mutation.

    :ivar record: the payload's object (``client``, ``job``, ``properties``) on success.
    :ivar error: why it failed (``userErrors`` or a GraphQL error), redacted.
    :ivar uncertain: the mutation may have been applied (no payload came back for it).
    """

    record: Any = None
    error: str | None = None
    uncertain: bool = False

    @property
    def ok(self) -> bool:
        return self.record is not None and self.error is None and not self.uncertain


__all__ = [
    "ADDRESS",
    "CLIENT_MATCH_FIELDS",
    "USER_ERRORS",
    "Field",
    "GraphQLResult",
    "MutationOutcome",
    "client_fields",
    "document",
    "f",
]
