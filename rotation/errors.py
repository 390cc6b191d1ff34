"""The rotation package's errors: one root, a few meaningful branches.

::

    RotationError                 root of everything this package raises on purpose
    ├── UsageError                bad input: settings, consumers file, CLI arguments (exit code 2)
    │   └── ConfigError           a consumers file or settings that fail validation (names each field)
    ├── VaultError                Vault/OpenBao answered with an error, or cannot be reached
    │   ├── VaultPermissionDenied 403: the token's policies refuse it (or the token expired)
    │   │   └── VaultLoginLockedOut an AppRole login refused with 403: the role is locked out (user lockout)
    │   ├── CasConflict           a check-and-set write lost a race (failure case V1): re-read, never clobber
    │   ├── LockHeld              another runner holds the consumer's rotation lease
    │   ├── LeaseLost             our lease expired or was taken over: fenced, no further side effect
    │   ├── RecordGone            the latest version of a record is deleted or destroyed (not absent)
    │   ├── MalformedRecord       a record read from Vault fails its checks (failure case H8): not used
    │   └── UnsupportedMount      the KV mount is not KV v2 (failure case V3)
    ├── AwsError                  an AWS control-plane call failed (after retries)
    ├── PushError                 a push target failed to take the new key
    ├── VerificationFailed        the test step could not prove the new key works (failure case A1)
    ├── EmptyKeyValue             a key value read back empty (failure case A3): never stored
    └── CanaryMisconfigured       the canary hit a routing error: fix the config; no rollback

Third-party errors become these in one place per backend, always ``raise ... from exc``:
:mod:`rotation.backends.vault_errors` (hvac, requests) and :mod:`rotation.backends.aws_errors`
(botocore). The app-side client (:mod:`rotation.client`) has its own small tree
(:class:`rotation.client.errors.KeyClientError`) so that it installs without this package's
dependencies.

No message built here ever contains a secret value: callers pass identifiers (consumer, key id,
Vault path, AWS operation), never key material.
"""

from __future__ import annotations

__all__ = [
    "AwsError",
    "CanaryMisconfigured",
    "CasConflict",
    "ConfigError",
    "EmptyKeyValue",
    "LeaseLost",
    "LockHeld",
    "MalformedRecord",
    "PushError",
    "RecordGone",
    "RotationError",
    "UnsupportedMount",
    "UsageError",
    "VaultError",
    "VaultLoginLockedOut",
    "VaultPermissionDenied",
    "VerificationFailed",
]


class RotationError(Exception):
    """Root of every error the rotation package raises on purpose."""


class UsageError(RotationError):
    """Bad input from the user: the CLI exits with code 2 and changes nothing."""


class ConfigError(UsageError):
    """A consumers file or settings failed validation; ``problems`` lists ``(field, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {field}: {message}" for field, message in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class VaultError(RotationError):
    """Vault/OpenBao refused a request or could not be reached."""


class VaultPermissionDenied(VaultError):
    """Vault answered 403: the token's policies do not allow the request, or the token expired."""


class VaultLoginLockedOut(VaultPermissionDenied):
    """An AppRole login answered 403: Vault/OpenBao refuse every login of a locked-out role id with
    ``permission denied``, the right secret id included (user lockout; docs/operations.md)."""


class CasConflict(VaultError):
    """A check-and-set write found a newer version than the one read: another writer won."""


class LockHeld(VaultError):
    """Another runner holds this consumer's rotation lease and it has not expired."""


class LeaseLost(CasConflict):
    """Our lease is no longer ours: it ran out on the shared clock (we stalled) or another runner
    took it over. Raised by the fence before a side effect, so nothing more is done under it."""


class MalformedRecord(VaultError):
    """A record read from Vault fails its checks (a field of the wrong type or shape); the message
    names the path and the field, never the value. Nothing acts on it (failure case H8)."""


class RecordGone(VaultError):
    """The latest version of a KV v2 record exists but its data is gone: ``state`` is
    ``"deleted"`` (soft-deleted, ``deletion_time`` set; ``bao kv undelete`` restores it) or
    ``"destroyed"`` (``destroyed: true``; the data cannot be restored). ``version`` is that
    version. Never treated as "absent": that would forget live keys (KV v2 metadata,
    https://openbao.org/api-docs/secret/kv/kv-v2/#read-secret-metadata)."""

    def __init__(self, message: str, *, path: str, state: str, version: int):
        super().__init__(message)
        self.path = path
        self.state = state
        self.version = version


class UnsupportedMount(VaultError):
    """The configured KV mount is not KV version 2, so check-and-set would be silently ignored."""


class AwsError(RotationError):
    """An AWS API call failed after its retries. ``code``: the AWS error code (e.g.
    ``NotFoundException``) or the transport error's type name; ``status``: the HTTP status or None."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class PushError(RotationError):
    """A push target did not accept the new key."""


class VerificationFailed(RotationError):
    """The test step could not prove, before its deadline, that the new key works."""


class EmptyKeyValue(RotationError):
    """A key value came back empty or missing; it is never written to Vault."""


class CanaryMisconfigured(RotationError):
    """The canary call hit a routing/configuration error (e.g. API Gateway's
    MissingAuthenticationTokenException): not a verdict on the key, so no rollback; the rotation
    stays in flight and the run reports the consumer as failed."""
