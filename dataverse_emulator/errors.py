"""The one error type handlers raise: it becomes a Dataverse-shaped error answer.

Dataverse answers every failure with ``{"error": {"code": "0x8004...", "message": "..."}}``; the codes
and texts used here follow Microsoft's public documentation (see docs/emulator.md for each source).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Codes named once so handlers and tests use the same values.
NOT_FOUND = "0x80040217"  # "<entity> With Id = <guid> Does Not Exist"
INVALID_ARGUMENT = "0x80060888"  # OData: unknown property, syntax error, undeclared property
BAD_REQUEST = "0x80048d19"  # payload errors: parsing, undeclared properties
UNAUTHORIZED = "0x80040220"
NOT_A_MEMBER = "0x80072560"  # "The user is not a member of the organization."
VERSION_MISMATCH = "0x80060882"  # If-Match with a stale row version
DUPLICATE_RECORD = "0x80040237"  # If-None-Match: * on an existing row
ELASTIC_EXPAND = "0x80048d0b"  # $expand on a multi-row query of an elastic table
METADATA_EXISTS = "0x80047013"  # schema name already used
UNSUPPORTED_MESSAGE = "0x80040800"  # a message the table does not support (UpdateMultiple)
SERVER_ERROR = "0x80040216"  # an unexpected server-side failure


@dataclass
class ApiError(Exception):
    """A failure the client sees as an HTTP status with a Dataverse error body."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def not_found(entity: str, key: str) -> ApiError:
    """The answer for a row that does not exist, as Dataverse words it."""
    return ApiError(404, NOT_FOUND, f"{entity} With Id = {key} Does Not Exist")


def entity_not_found(name: str) -> ApiError:
    """The answer for a table name the metadata cache does not know."""
    return ApiError(
        404,
        "0x80041102",
        f"The entity with a name = '{name}' with namemapping = 'Logical' was not found in the MetadataCache.",
    )


def bad_request(message: str, code: str = INVALID_ARGUMENT) -> ApiError:
    """A 400 answer; most query and payload mistakes use the OData code."""
    return ApiError(400, code, message)
