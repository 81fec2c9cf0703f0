"""Errors of amaas: a gRPC-style code (amaas.Code) and a message a person can
act on, as libamaas reports them (client/amaas.h, amaas_error_t).

Every error is an AmaasError; AmaasError(code, message) gives the subclass
of that code, so that callers may catch either:

    try:
        client.predict("nosuch", X)
    except amaas.NotFound as e:          # or: except amaas.AmaasError as e
        print(e.code, e.message)         # Code.NOT_FOUND  no model 'nosuch' ...
"""

from __future__ import annotations

import enum
from typing import Dict, Type, Union


class Code(enum.IntEnum):
    """Error codes; the numbers are gRPC's, as libamaas's amaas_code_t."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3  # the request is wrong: do not retry it as it is
    DEADLINE_EXCEEDED = 4  # no answer in time
    NOT_FOUND = 5  # no such model (or version)
    PERMISSION_DENIED = 7  # not allowed to call this model
    RESOURCE_EXHAUSTED = 8  # queue full: retry later
    INTERNAL = 13  # a bug in amaas
    UNAVAILABLE = 14  # no worker, worker lost, broker gone: retryable
    UNAUTHENTICATED = 16


def to_code(number: int) -> Code:
    """The Code of a number; UNKNOWN for a number amaas does not define."""
    try:
        return Code(number)
    except ValueError:
        return Code.UNKNOWN


_BY_CODE: Dict[Code, Type["AmaasError"]] = {}


class AmaasError(Exception):
    """An error from amaas (the broker, a worker, or libamaas itself).

    code is an amaas.Code, message the text for a person.  Constructing an
    AmaasError with a code that has a subclass (NotFound, ...) returns an
    instance of that subclass."""

    code: Code
    message: str

    def __new__(cls, code: Union[Code, int] = Code.UNKNOWN, message: str = ""):
        if cls is AmaasError:
            cls = _BY_CODE.get(to_code(int(code)), AmaasError)
        return super().__new__(cls)

    def __init__(self, code: Union[Code, int] = Code.UNKNOWN, message: str = "") -> None:
        super().__init__(code, message)
        self.code = to_code(int(code))
        self.message = message

    def __str__(self) -> str:
        return "%s: %s" % (self.code.name, self.message)

    def __repr__(self) -> str:
        return "%s(%s, %r)" % (type(self).__name__, self.code.name, self.message)


def _subclass(name: str, code: Code, doc: str) -> Type[AmaasError]:
    cls = type(name, (AmaasError,), {"__doc__": doc, "__module__": __name__})
    _BY_CODE[code] = cls
    return cls


Cancelled = _subclass("Cancelled", Code.CANCELLED, "The job was cancelled, or its client closed.")
Unknown = _subclass("Unknown", Code.UNKNOWN, "An error amaas could not classify.")
InvalidArgument = _subclass(
    "InvalidArgument", Code.INVALID_ARGUMENT,
    "The request is wrong (shape, datatype, output name...): do not retry it as it is.")
DeadlineExceeded = _subclass("DeadlineExceeded", Code.DEADLINE_EXCEEDED,
                             "No answer within the job's deadline.")
NotFound = _subclass("NotFound", Code.NOT_FOUND, "No such model or version.")
PermissionDenied = _subclass("PermissionDenied", Code.PERMISSION_DENIED,
                             "The broker's ACL does not let this client call the model.")
ResourceExhausted = _subclass("ResourceExhausted", Code.RESOURCE_EXHAUSTED,
                              "The queue is full or the client is over its share: retry later.")
Internal = _subclass("Internal", Code.INTERNAL, "A bug in amaas.")
Unavailable = _subclass(
    "Unavailable", Code.UNAVAILABLE,
    "No worker, a worker lost, the broker gone or libamaas not found: retryable.")
Unauthenticated = _subclass("Unauthenticated", Code.UNAUTHENTICATED,
                            "The broker did not accept this client's key.")


class LibraryNotFound(Unavailable, ImportError):  # type: ignore[misc, valid-type]
    """libamaas could not be loaded (code UNAVAILABLE); the message says
    where it was looked for and how to set AMAAS_LIBRARY."""

    def __new__(cls, message: str = ""):
        return Exception.__new__(cls)

    def __init__(self, message: str = "") -> None:
        AmaasError.__init__(self, Code.UNAVAILABLE, message)

    def __reduce__(self):
        return (type(self), (self.message,))
