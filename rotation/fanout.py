"""Fan-out for fleets beyond one process: a planner enqueues one job per consumer with work to
do, workers carry the jobs out on the existing engine. The single-process ``rotation run`` stays
the default for small fleets; this is for fleets whose run does not fit one Lambda invocation
(300 s timeout) or one pod.

Queue: an SQS **FIFO** queue. Each job's ``MessageGroupId`` is the consumer, so SQS never hands
two jobs of one consumer to workers at once (and the Vault lease still guards against any other
runner); the ``MessageDeduplicationId`` is ``<consumer>-<planning window>``, so a planner retried
within SQS's 5-minute deduplication interval does not enqueue a consumer twice
(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-exactly-once-processing.html).
A job that fails is not deleted: SQS delivers it again after the visibility timeout, and after
``maxReceiveCount`` deliveries moves it to the dead-letter queue, which has an alarm.

Job body (JSON): ``{"consumer": str, "action": str, "planned_at": ISO-8601}``. A worker
re-decides from Vault when it runs the job (``engine.run(only=[consumer])``): the action is for
people reading the queue, never trusted.

Entry points:

* :func:`planner_handler` / :func:`worker_handler`: Lambda handlers (the worker is an SQS event
  source with ``ReportBatchItemFailures``: only failed jobs are redelivered).
* ``python -m rotation.fanout plan|work --queue-url URL``: the Kubernetes CronJob (plan) and the
  Job with parallel pods (work: drains the queue, exits 0 when it is empty, 1 when a job failed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rotation.audit import REDACTOR
from rotation.engine.runner import Engine

__all__ = ["enqueue", "jobs_due", "main", "planner_handler", "run_jobs", "worker_handler"]

_ACTIONS_WITH_WORK = ("bootstrap", "rotate", "emergency", "resume")
SQS_BATCH = 10          # SendMessageBatch / ReceiveMessage take at most 10 messages


def jobs_due(engine: Engine, now: datetime | None = None) -> list[dict[str, Any]]:
    """One job per consumer with something to do (rotate, resume, revoke, delete, a recorded
    emergency request), from :meth:`Engine.decisions` (concurrent reads, no writes)."""
    now = now or datetime.now(UTC)
    out = []
    for c, _state, journal, d in engine.decisions():
        if d.rotate in _ACTIONS_WITH_WORK or d.revoke or d.delete or journal.emergency_request:
            out.append({"consumer": c.name, "action": d.rotate if d.rotate != "none" else "revoke",
                        "planned_at": now.isoformat(timespec="seconds")})
    return out


def enqueue(sqs: Any, queue_url: str, jobs: Iterable[dict[str, Any]], *, window: str) -> int:
    """SendMessageBatch the jobs (10 per call) to the FIFO queue; returns how many were accepted.
    Raises ``RuntimeError`` naming the consumers SQS refused."""
    jobs = list(jobs)
    sent, refused = 0, []
    for i in range(0, len(jobs), SQS_BATCH):
        chunk = jobs[i:i + SQS_BATCH]
        resp = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "MessageBody": json.dumps(job, separators=(",", ":")),
             "MessageGroupId": job["consumer"], "MessageDeduplicationId": f"{job['consumer']}-{window}"}
            for n, job in enumerate(chunk)])
        sent += len(resp.get("Successful", []))
        refused += [chunk[int(f["Id"])]["consumer"] for f in resp.get("Failed", [])]
    if refused:
        raise RuntimeError(f"SQS refused the jobs of {', '.join(refused)}; the next planner run enqueues them")
    return sent


def run_jobs(engine: Engine, bodies: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Carry out jobs ``{message id: body}`` on ``engine`` (its worker pool runs them at once).
    Returns ``(done message ids, {failed message id: reason})``. A job for a consumer not in the
    consumers file, or a body that is not a job, fails (and ends in the dead-letter queue)."""
    known = {c.name for c in engine.consumers.consumers}
    by_consumer: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for mid, body in bodies.items():
        try:
            consumer = json.loads(body)["consumer"]
        except (ValueError, KeyError, TypeError):
            failed[mid] = "not a job: the body must be JSON with a \"consumer\" field"
            continue
        if consumer not in known:
            failed[mid] = f"consumer {consumer!r} is not in the consumers file"
            continue
        by_consumer.setdefault(consumer, []).append(mid)
    done: list[str] = []
    if by_consumer:
        summary = engine.run(only=sorted(by_consumer))
        for o in summary.outcomes:
            mids = by_consumer.get(o.consumer, [])
            if o.outcome in ("failed", "rolled_back", "lost_lease", "locked", "queued"):
                for mid in mids:   # redelivered after the visibility timeout; the DLQ after maxReceiveCount
                    failed[mid] = REDACTOR.scrub(f"{o.consumer}: {o.outcome} {o.detail}")[:300]
            else:
                done += mids
    return done, failed


def _window(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M")


def _engine_from_env():
    from rotation.aws_lambda import _vault_secret_id
    from rotation.config import load_consumers_file
    from rotation.settings import load_settings
    from rotation.wiring import build_engine

    settings = load_settings(**_vault_secret_id())
    consumers = load_consumers_file(os.environ.get("ROTATION_CONSUMERS_FILE", "consumers.yaml"))
    return build_engine(settings, consumers)


def _sqs():
    import boto3
    return boto3.client("sqs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


def planner_handler(event: dict[str, Any] | None, context: Any = None, *, engine: Engine | None = None,
                    sqs: Any = None) -> dict[str, Any]:
    """Scheduled: enqueue one job per consumer with work to ``ROTATION_QUEUE_URL``. Returns
    ``{"enqueued": int, "consumers": [...]}``."""
    queue_url = os.environ["ROTATION_QUEUE_URL"]
    now = datetime.now(UTC)
    own = engine is None
    engine = engine or _engine_from_env()
    try:
        jobs = jobs_due(engine, now)
    finally:
        if own:
            engine.close()
    sent = enqueue(sqs or _sqs(), queue_url, jobs, window=_window(now))
    return {"enqueued": sent, "consumers": [j["consumer"] for j in jobs]}


def worker_handler(event: dict[str, Any], context: Any = None, *, engine: Engine | None = None) -> dict[str, Any]:
    """SQS event source (``ReportBatchItemFailures``): run the batch's jobs; answer
    ``{"batchItemFailures": [{"itemIdentifier": message id}, ...]}`` for the failed ones
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html)."""
    bodies = {r["messageId"]: r.get("body", "") for r in (event or {}).get("Records", [])}
    own = engine is None
    engine = engine or _engine_from_env()
    try:
        _done, failed = run_jobs(engine, bodies)
    finally:
        if own:
            engine.close()
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failed]}


def drain(engine: Engine, sqs: Any, queue_url: str, *, wait_seconds: int = 1, max_batches: int = 10_000) -> int:
    """Kubernetes worker: receive up to 10 jobs at a time until the queue is empty, run them,
    delete the done ones (failed ones come back after the visibility timeout). Returns the
    number of failed jobs."""
    failures = 0
    for _ in range(max_batches):
        resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=SQS_BATCH, WaitTimeSeconds=wait_seconds)
        messages = resp.get("Messages", [])
        if not messages:
            break
        receipts = {m["MessageId"]: m["ReceiptHandle"] for m in messages}
        done, failed = run_jobs(engine, {m["MessageId"]: m["Body"] for m in messages})
        failures += len(failed)
        for i in range(0, len(done), SQS_BATCH):
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(n), "ReceiptHandle": receipts[mid]} for n, mid in enumerate(done[i:i + SQS_BATCH])])
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rotation.fanout",
                                description="Plan rotation jobs onto an SQS FIFO queue, or work them off.")
    p.add_argument("command", choices=["plan", "work"])
    p.add_argument("--queue-url", default=os.environ.get("ROTATION_QUEUE_URL"),
                   help="the FIFO queue (default $ROTATION_QUEUE_URL)")
    args = p.parse_args(argv)
    if not args.queue_url or not args.queue_url.endswith(".fifo"):
        print("error: --queue-url (or ROTATION_QUEUE_URL) must be the URL of a FIFO queue (name ends in .fifo)",
              file=sys.stderr)
        return 2
    os.environ["ROTATION_QUEUE_URL"] = args.queue_url
    if args.command == "plan":
        result = planner_handler({})
        print(f"enqueued {result['enqueued']} job(s)")
        return 0
    with _engine_from_env() as engine:
        failures = drain(engine, _sqs(), args.queue_url)
    print(f"queue drained, {failures} job(s) failed (left for redelivery / the dead-letter queue)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
