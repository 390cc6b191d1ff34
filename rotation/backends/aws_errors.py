"""Where botocore errors become :class:`rotation.errors.AwsError` (the one place for AWS backends).

The mapping reads the structured error: ``ClientError.response["Error"]["Code"]`` and the HTTP
status (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/error-handling.html), never
message text. The resulting :class:`~rotation.errors.AwsError` carries ``code`` and ``status`` for
callers that branch on them, and is raised ``from`` the botocore error. Messages name the
operation and resource id, never a key value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import BotoCoreError, ClientError

from rotation.errors import AwsError

__all__ = ["aws_errors", "error_code"]


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` or our :class:`AwsError`, else the type name."""
    if isinstance(exc, AwsError):
        return exc.code
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        code = (resp.get("Error") or {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


@contextlib.contextmanager
def aws_errors(operation: str, what: str = "") -> Iterator[None]:
    """Map botocore errors raised inside the block to :class:`AwsError` naming ``operation`` and ``what``.

    :raises AwsError: with ``code`` (AWS error code, or the botocore exception's type name for
        transport errors) and ``status`` (HTTP status, or ``None``).
    """
    where = f"{operation} {what}".strip()
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise AwsError(f"{where}: AWS answered {code} (HTTP {status})", code=code, status=status) from exc
    except BotoCoreError as exc:
        raise AwsError(f"{where}: {type(exc).__name__}", code=type(exc).__name__) from exc
