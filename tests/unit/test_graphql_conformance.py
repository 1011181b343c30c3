"""Every Admin GraphQL document under src/ lives in a ``.graphql`` file that validates against
the real 2026-10 schema, and no Python module under src/ carries one in a string literal.

The schema is Shopify's own introspection result, loaded by the sandbox's cached loader; the
bulk backfill query is also held to Shopify's bulk rules by the sandbox's bulk validator.
"""

from __future__ import annotations

import ast
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    print_ast,
    validate,
)
from graphql.validation.rules.custom.no_deprecated import NoDeprecatedCustomRule

from syncapp.connectors.shopify.documents import (
    DocumentNotFoundError,
    document_names,
    load_document,
)
from syncapp.sandbox.shopify import documents as sandbox_documents
from syncapp.sandbox.shopify.graphql_api.bulk import BulkQueryError, check_bulk_query
from syncapp.sandbox.shopify.graphql_api.schema import admin_schema

SRC = Path(__file__).resolve().parents[2] / "src"
APP_DOCUMENTS = SRC / "syncapp" / "connectors" / "shopify" / "graphql"
GRAPHQL_FILES = sorted(SRC.rglob("*.graphql"))
PYTHON_FILES = sorted(SRC.rglob("*.py"))

# What the sync engine is built on; losing one of these files is a regression.
REQUIRED_APP_DOCUMENTS = {
    "shop",
    "products_updated_since",
    "product",
    "product_set",
    "product_delete",
    "variants_bulk_update",
    "bulk_products",
    "bulk_products_inner",
    "bulk_operation",
    "current_bulk_operation",
    "sync_product",
    "sync_product_variants",
    "sync_products_changed",
    "product_archive",
    "bulk_catalog_inner",
    "sync_variants_by_sku",
}
# Deprecated fields an app document may still use, each with the reason it has to.
ALLOWED_DEPRECATIONS = {
    "QueryRoot.currentBulkOperation": (
        "its replacement bulkOperations(query:) is not implemented by the sandbox yet"
    ),
}


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return admin_schema("2026-10")


def schema_problems(schema: GraphQLSchema, source: str) -> list[str]:
    """Why ``source`` is not an executable Admin document: syntax or validation messages."""
    try:
        document = parse(source)
    except GraphQLError as exc:
        return [f"syntax: {exc.message}"]
    problems = [error.message for error in validate(schema, document)]
    if not any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
        problems.append("the file defines no query, mutation or subscription")
    return problems


def _relative(path: Path) -> str:
    return str(path.relative_to(SRC.parent))


# ---- the .graphql files ---------------------------------------------------------------------


@pytest.mark.parametrize("path", GRAPHQL_FILES, ids=_relative)
def test_graphql_file_is_valid_against_the_admin_schema(schema: GraphQLSchema, path: Path) -> None:
    """The document parses, defines an operation and validates against 2026-10 without errors."""
    problems = schema_problems(schema, path.read_text(encoding="utf-8"))
    assert not problems, f"{_relative(path)} is not valid against Admin 2026-10:\n" + "\n".join(
        f"  - {p}" for p in problems
    )


def test_the_app_ships_every_document_the_sync_engine_is_built_on() -> None:
    """All required app documents exist, so the parametrised validation above covers them."""
    assert set(document_names()) >= REQUIRED_APP_DOCUMENTS
    assert {p.stem for p in GRAPHQL_FILES if p.parent == APP_DOCUMENTS} == set(document_names())


def test_an_invalid_document_is_reported(schema: GraphQLSchema) -> None:
    """A document naming a field and an argument that do not exist fails validation."""
    problems = schema_problems(schema, "query { shop { name nonsense } product(ref: 1) { id } }")
    assert any("nonsense" in p for p in problems), problems
    assert any("ref" in p for p in problems), problems


def test_a_document_with_a_syntax_error_is_reported(schema: GraphQLSchema) -> None:
    """An unbalanced brace is reported as a syntax problem rather than raising."""
    assert schema_problems(schema, "query { shop { name }")[0].startswith("syntax:")


def test_a_fragment_without_an_operation_is_reported(schema: GraphQLSchema) -> None:
    """A file holding only a fragment sends nothing, so it does not count as a document."""
    assert "the file defines no query, mutation or subscription" in schema_problems(
        schema, "fragment F on Shop { name }"
    )


@pytest.mark.parametrize("name", ["bulk_products_inner", "bulk_catalog_inner"])
def test_bulk_backfill_query_satisfies_shopifys_bulk_rules(
    schema: GraphQLSchema, name: str
) -> None:
    """The inner bulk query has one top-level connection (products) and passes the bulk rules."""
    _, root = check_bulk_query(schema, load_document(name))
    assert root.name.value == "products"


def test_sync_variant_reads_share_one_variant_fragment() -> None:
    """sync_product.graphql and sync_product_variants.graphql read the same variant fields."""

    def fragment(name: str) -> str:
        (found,) = (
            d
            for d in parse(load_document(name)).definitions
            if isinstance(d, FragmentDefinitionNode) and d.name.value == "SyncVariant"
        )
        return print_ast(found)

    assert fragment("sync_product") == fragment("sync_product_variants")


def test_a_bulk_query_nesting_connections_three_deep_is_refused(schema: GraphQLSchema) -> None:
    """The bulk check can fail: connections three levels deep break Shopify's depth rule."""
    too_deep = """
    { products { edges { node { id collections { edges { node { id
        products { edges { node { id } } } } } } } } } }
    """
    with pytest.raises(BulkQueryError, match="levels deep"):
        check_bulk_query(schema, too_deep)


def test_app_documents_use_no_deprecated_fields_beyond_the_allowed_ones(
    schema: GraphQLSchema,
) -> None:
    """Deprecated fields are about to break; each one still used is listed with its reason."""
    used: dict[str, list[str]] = {}
    for name in document_names():
        for error in validate(schema, parse(load_document(name)), [NoDeprecatedCustomRule]):
            field = error.message.split(" ")[2]  # "The field Type.name is deprecated. ..."
            used.setdefault(field, []).append(name)
    unexpected = {f: names for f, names in used.items() if f not in ALLOWED_DEPRECATIONS}
    assert not unexpected, f"deprecated fields in app documents: {unexpected}"


def test_product_queries_share_one_product_fragment() -> None:
    """product.graphql and products_updated_since.graphql read exactly the same Product fields."""

    def sync_product(name: str) -> str:
        document = parse(load_document(name))
        (fragment,) = (
            d
            for d in document.definitions
            if isinstance(d, FragmentDefinitionNode) and d.name.value == "SyncProduct"
        )
        return print_ast(fragment)

    assert sync_product("product") == sync_product("products_updated_since")


def test_app_operation_names_are_unique() -> None:
    """Each app document names its operation, and no two share a name (logs key on it)."""
    names = [_operation(parse(load_document(n))).name for n in document_names()]
    values = [n.value for n in names if n is not None]
    assert len(values) == len(names), "an app document has an anonymous operation"
    assert len(set(values)) == len(values), sorted(values)


def _operation(document: DocumentNode) -> OperationDefinitionNode:
    (operation,) = (d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return operation


# ---- the loaders ----------------------------------------------------------------------------


def test_load_document_returns_the_file_text() -> None:
    """The app loader returns the .graphql file's text unchanged."""
    assert load_document("shop") == (APP_DOCUMENTS / "shop.graphql").read_text(encoding="utf-8")


def test_load_document_names_the_missing_file() -> None:
    """A misspelt name raises DocumentNotFoundError naming the path and the real documents."""
    with pytest.raises(DocumentNotFoundError) as raised:
        load_document("prodcut_set")
    message = str(raised.value)
    assert "syncapp/connectors/shopify/graphql/prodcut_set.graphql" in message
    assert "product_set" in message


def test_sandbox_loader_names_the_missing_file() -> None:
    """The sandbox loader raises FileNotFoundError naming the file it looked for."""
    with pytest.raises(FileNotFoundError, match=r"documents/nope\.graphql"):
        sandbox_documents.load("nope")


def test_sandbox_loader_returns_the_file_text() -> None:
    """The sandbox loader returns its .graphql file's text unchanged."""
    path = SRC / "syncapp" / "sandbox" / "shopify" / "documents" / "seed_product.graphql"
    assert sandbox_documents.load("seed_product") == path.read_text(encoding="utf-8")


# ---- no documents in Python string literals -------------------------------------------------


@dataclass(frozen=True)
class EmbeddedOperation:
    """A string literal in Python source that is a GraphQL operation."""

    where: str
    line: int
    preview: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.preview}"


def _bare_expression_strings(tree: ast.AST) -> set[int]:
    """ids of string constants that are whole expression statements: docstrings (module, class,
    function, attribute) are evaluated and dropped, so they are never sent anywhere."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


_PLACEHOLDER = "_interpolated"


def _format_templates(tree: ast.AST) -> set[int]:
    """ids of string constants used as ``"...".format(...)`` templates."""
    return {
        id(node.func.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
    }


def _candidate_texts(node: ast.AST, templates: set[int]) -> Iterator[str]:
    """The texts a string literal turns into when sent: itself, or its formatted result.

    An f-string's interpolations, and ``{name}`` in a ``.format`` template, become a GraphQL
    name, which parses wherever a field list or a value could have been spliced in.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if id(node) not in templates:
            yield node.value
            return
        try:
            pieces = list(string.Formatter().parse(node.value))
        except ValueError:
            return
        yield "".join(
            text + ("" if field is None else f" {_PLACEHOLDER} ") for text, field, _, _ in pieces
        )
    elif isinstance(node, ast.JoinedStr):
        yield "".join(
            str(part.value) if isinstance(part, ast.Constant) else f" {_PLACEHOLDER} "
            for part in node.values
        )


def _is_operation(text: str) -> bool:
    if "{" not in text:
        return False
    try:
        document = parse(text)
    except GraphQLError:
        return False
    return any(isinstance(d, OperationDefinitionNode) for d in document.definitions)


def embedded_operations(source: str, where: str) -> list[EmbeddedOperation]:
    """String literals in ``source`` (docstrings excluded) that parse as a GraphQL operation."""
    tree = ast.parse(source, filename=where)
    skipped = _bare_expression_strings(tree)
    templates = _format_templates(tree)
    inside_fstrings = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped or id(node) in inside_fstrings:
            continue
        for text in _candidate_texts(node, templates):
            if _is_operation(text):
                first = text.strip().splitlines()[0][:80]
                found.append(EmbeddedOperation(where, getattr(node, "lineno", 0), first))
    return found


def test_no_python_module_under_src_embeds_a_graphql_operation() -> None:
    """GraphQL operations are sent from .graphql files only, so the validation above sees all."""
    offenders = [
        offender
        for path in PYTHON_FILES
        for offender in embedded_operations(path.read_text(encoding="utf-8"), _relative(path))
    ]
    assert not offenders, (
        "GraphQL operations in Python string literals (move each into a .graphql file and load"
        " it with load_document, or documents.load in the sandbox):\n"
        + "\n".join(f"  {o}" for o in offenders)
    )


def test_the_literal_check_scans_python_files() -> None:
    """The scan above covers the modules that used to embed documents."""
    scanned = {_relative(p) for p in PYTHON_FILES}
    assert "src/syncapp/sandbox/shopify/admin.py" in scanned
    assert "src/syncapp/sandbox/shopify/seed.py" in scanned


def test_a_query_in_a_plain_string_is_caught() -> None:
    """A module-level document string is reported with its line."""
    source = 'X = 1\nQ = """\nquery Shop { shop { name } }\n"""\n'
    (offender,) = embedded_operations(source, "synthetic.py")
    assert offender.line == 2
    assert offender.preview == "query Shop { shop { name } }"


def test_a_mutation_passed_as_an_argument_is_caught() -> None:
    """A document written inline in a call is reported too."""
    source = 'run(state, "mutation { productDelete(input: {id: 1}) { deletedProductId } }")\n'
    assert len(embedded_operations(source, "synthetic.py")) == 1


def test_an_fstring_document_with_escaped_braces_is_caught() -> None:
    """An f-string that splices fields into ``{{ }}``-escaped GraphQL is reported."""
    source = 'F = "id"\nQ = f"query P {{ products(first: 1) {{ nodes {{ {F} }} }} }}"\n'
    assert [o.line for o in embedded_operations(source, "synthetic.py")] == [2]


def test_a_format_template_document_is_caught() -> None:
    """A ``.format`` template of a document is reported."""
    source = 'Q = "{{ product(id: {id}) {{ title }} }}".format(id=1)\n'
    assert len(embedded_operations(source, "synthetic.py")) == 1


def test_docstrings_and_ordinary_strings_are_not_caught() -> None:
    """Docstrings showing a document, and text that is not GraphQL, are left alone."""
    source = (
        '"""Module: ``query { shop { name } }``\n\n{ shop { name } }\n"""\n'
        'MONEY = "{{amount}}"\n'
        "def f() -> None:\n"
        '    """{ products(first: 1) { nodes { id } } }"""\n'
        'CSS = "body { margin: 0 }"\n'
        'SEARCH = "updated_at:>2026-01-01 status:active"\n'
        'MSG = f"no shop {name}; create it with POST /_sandbox/shops"\n'
    )
    assert embedded_operations(source, "synthetic.py") == []
