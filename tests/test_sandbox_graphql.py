"""The sandbox's GraphQL engine on a schema of its own: parse, validate, coerce (no CRM behind it)."""

from __future__ import annotations

import pytest

from crm_sandbox.graphql import GraphQLError, Schema, Var, base_type, is_list, parse, resolve_vars

SCHEMA = Schema(
    scalars={"String", "Int", "Boolean", "ID"},
    enums={"Colour": {"RED", "BLUE"}},
    inputs={"ThingInput": {"name": "String!", "colour": "Colour"}},
    outputs={
        "Query": {"thing": "Thing", "things": "[Thing!]!"},
        "Mutation": {"thingCreate": "Thing!"},
        "Thing": {"id": "ID!", "name": "String!"},
    },
    args={("Query", "thing"): {"id": "ID!"}, ("Mutation", "thingCreate"): {"input": "ThingInput!"}},
)


def _error(query: str, variables: dict | None = None) -> GraphQLError:
    with pytest.raises(GraphQLError) as caught:
        op = parse(query)
        SCHEMA.validate(op)
        SCHEMA.coerce_variables(op, variables)
    return caught.value


def test_parse_validate_and_coerce_a_mutation():
    op = parse("mutation Make($in: ThingInput!) { thingCreate(input: $in) { id name } }")
    SCHEMA.validate(op)
    variables = SCHEMA.coerce_variables(op, {"in": {"name": "a", "colour": "RED"}})
    assert op.kind == "mutation" and op.selections[0].args == {"input": Var("in")}
    assert resolve_vars(op.selections[0].args, variables) == {"input": {"name": "a", "colour": "RED"}}


def test_graphql_ruby_shaped_errors():
    assert _error("{ thing(id: 1) { colour } }").to_json() == {
        "message": "Field 'colour' doesn't exist on type 'Thing'",
        "locations": [{"line": 1, "column": 18}],
        "extensions": {"code": "undefinedField", "typeName": "Thing", "fieldName": "colour"},
    }
    assert _error("{ thing { id } }").extensions["code"] == "missingRequiredArguments"
    assert _error("{ things }").extensions["code"] == "selectionMismatch"
    assert _error("query Q($x: Nope) { things { id } }").extensions["code"] == "variableRequiresValidType"
    assert _error("fragment F on Thing { id }").message == "Fragments are not supported by this sandbox"
    bad = _error(
        "mutation M($in: ThingInput!) { thingCreate(input: $in) { id } }", {"in": {"name": "a", "colour": "GREEN"}}
    )
    assert bad.message == "Variable $in of type ThingInput! was provided invalid value for colour"


def test_type_references():
    assert base_type("[Thing!]!") == "Thing" and is_list("[Thing!]!") and not is_list("Thing!")
