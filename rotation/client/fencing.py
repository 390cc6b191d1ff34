"""The fencing rule every key holder applies: push targets (:mod:`rotation.targets`) and the
webhook receiver (:mod:`rotation.client.receiver`).

Each delivery carries ``serial`` (the key generation) and ``fence``, the fencing token: the version
of the consumer's rotation record (``<prefix>/rotations/<consumer>``, KV v2) that confirmed the
writer's lease right before it wrote. KV v2 versions only grow and every lease holder writes that
record before it pushes, so a later lease holder always carries a higher fence than a runner whose
lease it took over. A holder refuses a write that is older than what it holds, so a runner that
stalled between its lease check and its write can never replace a newer key (M. Kleppmann, "How to
do distributed locking", 2016: the storage checks the token). Within one fence the serial never goes
backwards; only a later lease holder may hand over a lower serial (a rollback, or the repair of a
holder that has a rolled-back or revoked key).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Held", "supersedes"]


@dataclass(frozen=True)
class Held:
    """What a key holder holds (no secret): ``serial`` and ``fence`` of the key it serves
    (``fence`` 0 when the writer recorded none, e.g. a key written by hand), and the API key id
    when the holder records one."""

    serial: int
    fence: int = 0
    key_id: str | None = None


def supersedes(serial: int, fence: int, held: Held | None) -> bool:
    """May a write of ``(serial, fence)`` replace ``held``? Yes when nothing is held, when the
    write's fence is higher (a later lease holder), or, at the same fence, when its serial is not
    lower (the same serial again is a retry of the same delivery)."""
    if held is None:
        return True
    if fence != held.fence:
        return fence > held.fence
    return serial >= held.serial
