"""GraphQL errors the sandbox raises itself, worded and coded as Shopify words them.

``NotImplementedInSandbox`` is the sandbox's own: a document valid against the real schema
that touches something the sandbox does not model gets a loud error naming it, never a
silent null that a test could mistake for Shopify's answer.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

NOT_IMPLEMENTED_CODE = "NOT_IMPLEMENTED_IN_SANDBOX"


class NotImplementedInSandbox(GraphQLError):
    """Raised for a schema element (field, argument, input field, value) the sandbox lacks."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} is not implemented by the Shopify sandbox",
            extensions={"code": NOT_IMPLEMENTED_CODE},
        )


def field_not_implemented(type_name: str, field_name: str) -> NotImplementedInSandbox:
    return NotImplementedInSandbox(f"Field '{type_name}.{field_name}'")


def argument_error(message: str, **extensions: Any) -> GraphQLError:
    """An execution-time argument problem (bad cursor, missing first/last), as Shopify answers."""
    return GraphQLError(message, extensions={"code": "BAD_REQUEST", **extensions})
