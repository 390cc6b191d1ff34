"""AWS SSM Parameter Store target: the key as a ``SecureString`` parameter encrypted with a KMS key.

Value (JSON): ``{"api_key", "serial", "key_id"}``. ``put_parameter(Type="SecureString",
KeyId=<kms key>, Overwrite=True, Tier="Standard")``; each push makes a new parameter version. The
parameter's ``Description`` carries the delivery's idempotency key and fencing token
(``rotation <id> serial <n> fence <f>``, no secret).

Fencing (:func:`rotation.targets.supersedes`): each version this target writes gets the parameter
label ``fence-<f>-serial-<n>`` (LabelParameterVersion, right after the put). Before every overwrite
the target reads the versions with ``GetParameterHistory`` (no ``kms:Decrypt`` needed) and writes
nothing when the latest one holds a newer ``(fence, serial)``; a latest version without our label
(put by hand, or a writer killed between its put and its label) has an unknown serial (0) and the
highest fence any version carries, so a later lease holder's write, or its reconciliation,
replaces it and a stalled runner's does not. The same read detects a retry of a delivery that
already landed. A parameter that cannot be read is not written (fail closed). PutParameter has no
condition, so two writers racing within one call could still interleave; the lease makes that a
stalled runner against the lease holder, whose reconciliation (:mod:`rotation.engine.reconcile`)
repairs it on its next run.

Labels never pile up: Parameter Store keeps 100 versions and will not drop the oldest one while it
carries a label (``ParameterMaxVersionLimitExceeded`` on every later put). So before its put an
accepted writer removes (UnlabelParameterVersion) every fence label of the history it just read
except the two :meth:`_held` depends on: the latest version's, and the one with the highest
``(fence, serial)``. Neither answer of :meth:`_held` changes, so the fence is kept, and at most
three versions carry a fence label (two in the steady state); a parameter already stuck at 100
labelled versions is freed by its next accepted push. Labels not of the ``fence-F-serial-N`` form
are left alone. A failed removal does not stop the put (the next push retries it); the result's
detail says so. IAM: ``ssm:PutParameter``, ``ssm:GetParameterHistory``,
``ssm:LabelParameterVersion``, ``ssm:UnlabelParameterVersion`` on the parameter.

AWS API: https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html and
https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameterHistory.html,
https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_LabelParameterVersion.html,
https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_UnlabelParameterVersion.html.
The target never raises for an AWS failure: it reports ``ok=False`` with the AWS error code only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rotation.backends.aws_errors import error_code
from rotation.errors import PushError
from rotation.targets import Delivery, Held, PushResult, refused, supersedes

_LABEL = re.compile(r"^fence-(?P<fence>\d+)-serial-(?P<serial>\d+)$")

__all__ = ["SsmParameterTarget"]


class SsmParameterTarget:
    """Put each new key into SSM parameter ``name`` (e.g. ``/mail-api/billing/api-key``).

    :param client: a boto3 ``ssm`` client.
    :param name: the parameter name (a path starting with ``/`` is recommended for IAM scoping).
    :param kms_key_id: KMS key id/ARN/alias for the SecureString (``None``: the ``aws/ssm`` key).
    :param required: whether promotion waits for this target.
    :param tier: ``Standard`` (default; 4 KB, no charge) or ``Advanced``.
    """

    def __init__(self, client: Any, name: str, *, kms_key_id: str | None = None, required: bool = True,
                 tier: str = "Standard"):
        self.client = client
        self.name = name
        self.kms_key_id = kms_key_id
        self.required = required
        self.tier = tier
        self.target_id = f"ssm:{name}"

    def __repr__(self) -> str:
        return f"SsmParameterTarget(name={self.name!r}, kms_key_id={self.kms_key_id!r})"

    @staticmethod
    def description(delivery: Delivery) -> str:
        return (f"mail API key for {delivery.consumer}: rotation {delivery.rotation_id} serial {delivery.serial} "
                f"fence {delivery.fence} key {delivery.key_id} (managed by the rotation job)")[:1024]

    def _history(self) -> list[dict[str, Any]]:
        """Every version of the parameter (GetParameterHistory, all pages), oldest first; ``[]``
        when it does not exist."""
        versions: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"Name": self.name, "WithDecryption": False, "MaxResults": 50}
            if token:
                kwargs["NextToken"] = token
            try:
                page = self.client.get_parameter_history(**kwargs)
            except Exception as exc:
                if error_code(exc) == "ParameterNotFound":
                    return []
                raise
            versions += page.get("Parameters") or []
            token = page.get("NextToken")
            if not token:
                return sorted(versions, key=lambda v: int(v.get("Version") or 0))

    @staticmethod
    def _held(history: list[dict[str, Any]]) -> Held | None:
        """What the latest version holds, from its label (module docstring)."""
        if not history:
            return None
        marks = [(int(m["fence"]), int(m["serial"])) for v in history for label in v.get("Labels") or []
                 if (m := _LABEL.match(label))]
        latest = [(int(m["fence"]), int(m["serial"])) for label in history[-1].get("Labels") or []
                  if (m := _LABEL.match(label))]
        if latest:
            return Held(max(latest)[1], max(latest)[0])
        return Held(0, max((f for f, _ in marks), default=0))

    @staticmethod
    def label(delivery: Delivery) -> str:
        return f"fence-{delivery.fence}-serial-{delivery.serial}"

    @staticmethod
    def _stale_labels(history: list[dict[str, Any]]) -> list[tuple[int, list[str]]]:
        """``(version, fence labels)`` that may go without changing :meth:`_held`: every fence
        label except the latest version's and the one with the highest ``(fence, serial)``."""
        if not history:
            return []
        marks = [((int(m["fence"]), int(m["serial"])), label) for v in history for label in v.get("Labels") or []
                 if (m := _LABEL.match(label))]
        keep = set(history[-1].get("Labels") or [])
        if marks:
            keep.add(max(marks)[1])
        out = []
        for v in history[:-1]:
            stale = [label for label in v.get("Labels") or [] if _LABEL.match(label) and label not in keep]
            if stale:
                out.append((int(v["Version"]), stale))
        return out

    def _prune(self, history: list[dict[str, Any]]) -> str:
        """Remove the labels :meth:`_stale_labels` names; ``""``, or the AWS error code of the
        first removal that failed (the next push tries again)."""
        for version, labels in self._stale_labels(history):
            try:   # a version carries at most 10 labels, and one call removes up to 10
                self.client.unlabel_parameter_version(Name=self.name, ParameterVersion=version, Labels=labels[:10])
            except Exception as exc:  # noqa: BLE001 - reported by code only; the fence labels kept are intact
                return error_code(exc)
        return ""

    def read_back(self, consumer: str) -> Held | None:
        """What the parameter holds (serial, fence, key id from its latest version's description).
        Raises :class:`~rotation.errors.PushError` (AWS error code only)."""
        try:
            return self._held(self._history())
        except Exception as exc:  # noqa: BLE001 - reported by code only
            raise PushError(f"{self.target_id}: cannot read it back: aws: {error_code(exc)}") from None

    def push(self, delivery: Delivery) -> PushResult:
        desc = self.description(delivery)
        try:
            history = self._history()
        except Exception as exc:  # noqa: BLE001 - fail closed: without the held serial, no overwrite
            return PushResult(self.target_id, False, f"aws: {error_code(exc)} (cannot read the held serial; "
                                                     "not written)")
        latest = history[-1] if history else None
        if latest is not None and latest.get("Description") == desc and self.label(delivery) in (latest.get("Labels")
                                                                                                  or []):
            return PushResult(self.target_id, True, "already up to date", {"version": latest.get("Version")})
        held = self._held(history)
        if held is not None and not supersedes(delivery.serial, delivery.fence, held):
            return refused(self.target_id, delivery, held)
        not_pruned = self._prune(history)
        try:
            kwargs: dict[str, Any] = {
                "Name": self.name, "Type": "SecureString", "Overwrite": True, "Tier": self.tier,
                "Description": desc,
                "Value": json.dumps({"api_key": delivery.value, "serial": delivery.serial,
                                     "key_id": delivery.key_id}, separators=(",", ":")),
            }
            if self.kms_key_id:
                kwargs["KeyId"] = self.kms_key_id
            r = self.client.put_parameter(**kwargs)
            self.client.label_parameter_version(Name=self.name, ParameterVersion=r["Version"],
                                                Labels=[self.label(delivery)])
        except Exception as exc:  # noqa: BLE001 - a target never raises (targets/__init__.py)
            return PushResult(self.target_id, False, f"aws: {error_code(exc)}"
                                                     + (f" (old fence labels not removed: aws: {not_pruned})"
                                                        if not_pruned else ""))
        return PushResult(self.target_id, True, "SecureString written" + (
            f"; old fence labels not removed: aws: {not_pruned}" if not_pruned else ""), {"version": r.get("Version")})
