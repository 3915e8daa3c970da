"""A small GraphQL engine: lexer, parser, static validation and input coercion against a :class:`Schema`.

It follows graphql-ruby (the server behind Jobber's API): its error messages and ``extensions.code``
values, its ``ISO8601Date`` / ``ISO8601DateTime`` scalars. One operation per request, no fragments,
directives or subscriptions: those are refused with a :class:`GraphQLError`. The schema, the resolvers
and the query-cost rule are the CRM's (:mod:`crm_sandbox.jobber`), as :mod:`crm_sandbox.soql` is the
query language of :mod:`crm_sandbox.salesforce`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "GraphQLError",
    "InputProblem",
    "Operation",
    "Schema",
    "Selection",
    "Var",
    "base_type",
    "is_list",
    "parse",
    "parse_date",
    "parse_datetime",
    "resolve_vars",
]


# =========================================================================== lexer + parser


class GraphQLError(Exception):
    """A request-level GraphQL error (parse or validation): answered with no ``data``."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        extensions: dict[str, Any] | None = None,
        path: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line, self.column = line, column
        self.extensions = extensions
        self.path = path

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.line is not None:
            out["locations"] = [{"line": self.line, "column": self.column}]
        if self.path is not None:
            out["path"] = self.path
        if self.extensions:
            out["extensions"] = self.extensions
        return out


_TOKEN = re.compile(
    r"""
    (?P<ws>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&()\[\]{}:=@|])
  | (?P<float>-?(?:0|[1-9]\d*)(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+))
  | (?P<int>-?(?:0|[1-9]\d*))
  | (?P<block>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\")
  | (?P<string>"(?:[^"\\\n\r]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*")
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Tok:
    kind: str
    value: str
    line: int
    column: int


def _lex(source: str) -> list[Tok]:
    tokens: list[Tok] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise GraphQLError(
                f"Parse error on {source[pos : pos + 10]!r} (unexpected character)",
                line=line,
                column=pos - line_start + 1,
            )
        kind = match.lastgroup or ""
        text = match.group()
        if kind != "ws":
            tokens.append(Tok(kind, text, line, pos - line_start + 1))
        for i, ch in enumerate(text):
            if ch == "\n":
                line, line_start = line + 1, pos + i + 1
        pos = match.end()
    tokens.append(Tok("eof", "", line, pos - line_start + 1))
    return tokens


@dataclass
class Var:
    name: str


@dataclass
class Selection:
    name: str
    alias: str | None
    args: dict[str, Any]
    children: list[Selection] | None
    line: int
    column: int

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class Operation:
    kind: str  # "query" | "mutation"
    name: str | None
    variables: dict[str, tuple[str, Any]]  # name -> (type text, default)
    selections: list[Selection]


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = _lex(source)
        self.i = 0

    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def fail(self, expected: str) -> GraphQLError:
        tok = self.tok
        shown = "end of file" if tok.kind == "eof" else repr(tok.value)
        return GraphQLError(f"Parse error on {shown} (expected {expected})", line=tok.line, column=tok.column)

    def take(self, kind: str, value: str | None = None) -> Tok:
        tok = self.tok
        if tok.kind != kind or (value is not None and tok.value != value):
            raise self.fail(value or kind)
        self.i += 1
        return tok

    def peek(self, kind: str, value: str | None = None) -> bool:
        tok = self.tok
        return tok.kind == kind and (value is None or tok.value == value)

    def document(self) -> Operation:
        ops = []
        while not self.peek("eof"):
            if self.peek("name", "fragment"):
                raise GraphQLError(
                    "Fragments are not supported by this sandbox", line=self.tok.line, column=self.tok.column
                )
            ops.append(self.operation())
        if len(ops) != 1:
            raise GraphQLError("A request must contain exactly one operation" if ops else "No operation given")
        return ops[0]

    def operation(self) -> Operation:
        if self.peek("punct", "{"):
            return Operation("query", None, {}, self.selection_set())
        kind_tok = self.take("name")
        if kind_tok.value not in ("query", "mutation"):
            raise GraphQLError(
                f"Unsupported operation type {kind_tok.value!r}", line=kind_tok.line, column=kind_tok.column
            )
        name = self.take("name").value if self.peek("name") else None
        variables: dict[str, tuple[str, Any]] = {}
        if self.peek("punct", "("):
            self.take("punct", "(")
            while not self.peek("punct", ")"):
                self.take("punct", "$")
                var = self.take("name").value
                self.take("punct", ":")
                type_text = self.type_ref()
                default = self.value(const=True) if self.peek("punct", "=") and self.take("punct", "=") else None
                variables[var] = (type_text, default)
            self.take("punct", ")")
        if self.peek("punct", "@"):
            raise GraphQLError(
                "Directives are not supported by this sandbox", line=self.tok.line, column=self.tok.column
            )
        return Operation(kind_tok.value, name, variables, self.selection_set())

    def type_ref(self) -> str:
        if self.peek("punct", "["):
            self.take("punct", "[")
            inner = self.type_ref()
            self.take("punct", "]")
            text = f"[{inner}]"
        else:
            text = self.take("name").value
        if self.peek("punct", "!"):
            self.take("punct", "!")
            text += "!"
        return text

    def selection_set(self) -> list[Selection]:
        self.take("punct", "{")
        out = []
        while not self.peek("punct", "}"):
            if self.peek("spread"):
                raise GraphQLError(
                    "Fragments are not supported by this sandbox", line=self.tok.line, column=self.tok.column
                )
            out.append(self.selection())
        self.take("punct", "}")
        if not out:
            raise self.fail("a field")
        return out

    def selection(self) -> Selection:
        first = self.take("name")
        alias, name = None, first.value
        if self.peek("punct", ":"):
            self.take("punct", ":")
            alias, name = first.value, self.take("name").value
        args: dict[str, Any] = {}
        if self.peek("punct", "("):
            self.take("punct", "(")
            while not self.peek("punct", ")"):
                arg = self.take("name").value
                self.take("punct", ":")
                args[arg] = self.value(const=False)
            self.take("punct", ")")
        if self.peek("punct", "@"):
            raise GraphQLError(
                "Directives are not supported by this sandbox", line=self.tok.line, column=self.tok.column
            )
        children = self.selection_set() if self.peek("punct", "{") else None
        return Selection(name, alias, args, children, first.line, first.column)

    def value(self, *, const: bool) -> Any:
        tok = self.tok
        if tok.kind == "punct" and tok.value == "$":
            if const:
                raise self.fail("a constant value")
            self.take("punct", "$")
            return Var(self.take("name").value)
        if tok.kind == "int":
            self.i += 1
            return int(tok.value)
        if tok.kind == "float":
            self.i += 1
            return float(tok.value)
        if tok.kind == "string":
            self.i += 1
            return json.loads(tok.value)
        if tok.kind == "block":
            self.i += 1
            return tok.value[3:-3].replace('\\"""', '"""')
        if tok.kind == "name":
            self.i += 1
            literals = {"true": True, "false": False, "null": None}
            return literals[tok.value] if tok.value in literals else _Enum(tok.value)
        if tok.kind == "punct" and tok.value == "[":
            self.take("punct", "[")
            items = []
            while not self.peek("punct", "]"):
                items.append(self.value(const=const))
            self.take("punct", "]")
            return items
        if tok.kind == "punct" and tok.value == "{":
            self.take("punct", "{")
            obj = {}
            while not self.peek("punct", "}"):
                key = self.take("name").value
                self.take("punct", ":")
                obj[key] = self.value(const=const)
            self.take("punct", "}")
            return obj
        raise self.fail("a value")


class _Enum(str):
    """An enum literal written inline (``description: MAIN``)."""


def parse(source: str) -> Operation:
    return _Parser(source).document()


# =========================================================================== types


def base_type(type_text: str) -> str:
    """The named type of a type reference: ``[Client!]!`` -> ``Client``."""
    return type_text.replace("[", "").replace("]", "").replace("!", "")


def is_list(type_text: str) -> bool:
    """Whether a type reference is a list (``[Client!]!``)."""
    return type_text.rstrip("!").startswith("[")


# =========================================================================== validation + input coercion


def _undefined_field(sel: Selection, owner: str) -> GraphQLError:
    return GraphQLError(
        f"Field '{sel.name}' doesn't exist on type '{owner}'",
        line=sel.line,
        column=sel.column,
        extensions={"code": "undefinedField", "typeName": owner, "fieldName": sel.name},
    )


class InputProblem(Exception):
    def __init__(self, path: list[str], problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Schema:
    """The types an API serves, as type references written in GraphQL syntax (``"[EncodedId!]"``).

    :param scalars: scalar type names.
    :param enums: enum type -> its values.
    :param inputs: input object type -> field -> type.
    :param outputs: object type -> field -> type (``Query`` and ``Mutation`` are the roots).
    :param args: (object type, field) -> argument -> type.
    """

    scalars: set[str]
    enums: dict[str, set[str]]
    inputs: dict[str, dict[str, str]]
    outputs: dict[str, dict[str, str]]
    args: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def validate(self, op: Operation) -> None:
        """Static checks graphql-ruby makes before executing anything."""
        for name, (type_text, _) in op.variables.items():
            base = base_type(type_text)
            if base not in self.scalars and base not in self.enums and base not in self.inputs:
                raise GraphQLError(
                    f"{base} isn't a defined input type (on ${name})",
                    extensions={"code": "variableRequiresValidType", "typeName": base, "variableName": name},
                )
        used: set[str] = set()
        self._validate_set(op.selections, "Mutation" if op.kind == "mutation" else "Query", op, used)
        unused = set(op.variables) - used
        if unused:
            name = min(unused)
            raise GraphQLError(
                f"Variable ${name} is declared by {op.name or 'anonymous ' + op.kind} but not used",
                extensions={"code": "variableNotUsed", "variableName": name},
            )

    def _validate_set(self, selections: list[Selection], owner: str, op: Operation, used: set[str]) -> None:
        seen: dict[str, Selection] = {}
        for sel in selections:
            if sel.name == "__typename":
                continue
            field_type = self.outputs[owner].get(sel.name)
            if field_type is None:
                raise _undefined_field(sel, owner)
            other = seen.get(sel.key)
            if other is not None and (other.name != sel.name or other.args != sel.args):
                raise GraphQLError(
                    f"Field '{sel.key}' has a field conflict: {other.name} or {sel.name}?",
                    line=sel.line,
                    column=sel.column,
                    extensions={"code": "fieldConflict"},
                )
            seen[sel.key] = sel
            declared = self.args.get((owner, sel.name), {})
            for arg, value in sel.args.items():
                if arg not in declared:
                    raise GraphQLError(
                        f"Field '{sel.name}' doesn't accept argument '{arg}'",
                        line=sel.line,
                        column=sel.column,
                        extensions={
                            "code": "argumentNotAccepted",
                            "name": sel.name,
                            "typeName": "Field",
                            "argumentName": arg,
                        },
                    )
                self._check_var_use(value, declared[arg], op, used, sel, arg)
            for arg, type_text in declared.items():
                if type_text.endswith("!") and arg not in sel.args:
                    raise GraphQLError(
                        f"Field '{sel.name}' is missing required arguments: {arg}",
                        line=sel.line,
                        column=sel.column,
                        extensions={
                            "code": "missingRequiredArguments",
                            "className": "Field",
                            "name": sel.name,
                            "arguments": arg,
                        },
                    )
            base = base_type(field_type)
            if base in self.outputs:
                if not sel.children:
                    raise GraphQLError(
                        f"Field must have selections (field '{sel.name}' returns {field_type} but "
                        f"has no selections. Did you mean '{sel.name} {{ ... }}'?)",
                        line=sel.line,
                        column=sel.column,
                        extensions={"code": "selectionMismatch", "nodeName": sel.name, "typeName": field_type},
                    )
                self._validate_set(sel.children, base, op, used)
            elif sel.children:
                raise GraphQLError(
                    f"Selections can't be made on scalars (field '{sel.name}' returns {field_type} but "
                    "has selections [...])",
                    line=sel.line,
                    column=sel.column,
                    extensions={"code": "selectionMismatch", "nodeName": sel.name, "typeName": field_type},
                )

    def _check_var_use(
        self, value: Any, expected: str, op: Operation, used: set[str], sel: Selection, arg: str
    ) -> None:
        if isinstance(value, Var):
            used.add(value.name)
            declared = op.variables.get(value.name)
            if declared is None:
                raise GraphQLError(
                    f"Variable ${value.name} is used by {op.name or 'anonymous ' + op.kind} but not declared",
                    line=sel.line,
                    column=sel.column,
                    extensions={"code": "variableNotDefined", "variableName": value.name},
                )
            dtype = declared[0]
            compatible = (
                dtype == expected
                or (dtype == expected + "!")
                or (base_type(dtype) == base_type(expected) and is_list(dtype) == is_list(expected))
            )
            if not compatible:
                raise GraphQLError(
                    f"Type mismatch on variable ${value.name} and argument {arg} ({dtype} / {expected})",
                    line=sel.line,
                    column=sel.column,
                    extensions={
                        "code": "variableMismatch",
                        "variableName": value.name,
                        "typeName": dtype,
                        "argumentName": arg,
                        "errorMessage": "Type mismatch",
                    },
                )
        elif isinstance(value, list):
            for item in value:
                self._check_var_use(item, expected.rstrip("!").strip("[]"), op, used, sel, arg)
        elif isinstance(value, dict):
            fields = self.inputs.get(base_type(expected), {})
            for key, item in value.items():
                self._check_var_use(item, fields.get(key, "String"), op, used, sel, arg)

    def coerce(self, value: Any, type_text: str, path: list[str]) -> Any:
        """Check ``value`` against ``type_text`` (variables or literals); raise :class:`InputProblem`."""
        required = type_text.endswith("!")
        inner = type_text[:-1] if required else type_text
        if value is None:
            if required:
                raise InputProblem(path, "Expected value to not be null")
            return None
        if inner.startswith("["):
            item_type = inner[1:-1]
            items = value if isinstance(value, list) else [value]
            return [self.coerce(item, item_type, path + [str(i)]) for i, item in enumerate(items)]
        if inner in self.inputs:
            if not isinstance(value, dict):
                raise InputProblem(path, f"Expected {value!r} to be a key-value object")
            fields = self.inputs[inner]
            for key in value:
                if key not in fields:
                    raise InputProblem(path + [key], "Field is not defined on " + inner)
            out = {}
            for key, ftype in fields.items():
                if key in value or ftype.endswith("!"):
                    out[key] = self.coerce(value.get(key), ftype, path + [key])
            return out
        if inner in self.enums:
            if not isinstance(value, str) or value not in self.enums[inner]:
                allowed = ", ".join(sorted(self.enums[inner]))
                raise InputProblem(path, f"Expected {json.dumps(value)} to be one of: {allowed}")
            return str(value)
        if inner == "Int":
            if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
                raise InputProblem(path, f"Could not coerce value {json.dumps(value)} to Int")
            return value
        if inner == "Float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputProblem(path, f"Could not coerce value {json.dumps(value)} to Float")
            return float(value)
        if inner == "Boolean":
            if not isinstance(value, bool):
                raise InputProblem(path, f"Could not coerce value {json.dumps(value)} to Boolean")
            return value
        if not isinstance(value, str) or isinstance(value, _Enum):
            raise InputProblem(path, f"Could not coerce value {json.dumps(value)} to {inner}")
        if inner == "ISO8601Date" and parse_date(value) is None:
            raise InputProblem(path, f"{json.dumps(value)} is not a valid ISO8601 date")
        if inner == "ISO8601DateTime" and parse_datetime(value) is None:
            raise InputProblem(path, f"{json.dumps(value)} is not a valid ISO8601 date-time")
        return value

    def coerce_variables(self, op: Operation, raw: Any) -> dict[str, Any]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise GraphQLError("variables must be a JSON object")
        out = {}
        for name, (type_text, default) in op.variables.items():
            value = raw.get(name, default)
            try:
                out[name] = self.coerce(value, type_text, [])
            except InputProblem as exc:
                raise GraphQLError(
                    f"Variable ${name} of type {type_text} was provided invalid value"
                    + (f" for {'.'.join(exc.path)}" if exc.path else ""),
                    extensions={"value": value, "problems": [{"path": exc.path, "explanation": exc.problem}]},
                ) from None
        return out


def resolve_vars(value: Any, variables: dict[str, Any]) -> Any:
    """``value`` (an argument literal) with each :class:`Var` replaced by its variable's value."""
    if isinstance(value, Var):
        return variables.get(value.name)
    if isinstance(value, list):
        return [resolve_vars(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve_vars(v, variables) for k, v in value.items()}
    return value


def parse_date(value: str) -> datetime | None:
    """A ``YYYY-MM-DD`` date (``ISO8601Date``) at midnight UTC, or None."""
    try:
        return datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC) if len(value) == 10 else None
    except ValueError:
        return None


def parse_datetime(value: str) -> datetime | None:
    """An ``ISO8601DateTime`` (UTC when it names no zone), or None."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
