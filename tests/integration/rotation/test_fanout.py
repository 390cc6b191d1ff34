"""The fan-out's planner and worker handlers, in process, against the stack's real OpenBao and
moto's SQS (server mode): one job per consumer with work, FIFO groups per consumer, only failed
jobs redelivered, the queue drained by a Kubernetes-style worker."""

from __future__ import annotations

import json

import pytest

from rotation import fanout
from rotation.errors import VerificationFailed


@pytest.fixture
def queue(env):
    sqs = env.stack.aws_session().client("sqs", endpoint_url=env.stack.aws_endpoint)
    url = sqs.create_queue(QueueName="rotation-jobs.fifo", Attributes={
        "FifoQueue": "true", "VisibilityTimeout": "0"})["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def _messages(sqs, url):
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return out
        out += got
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_planner_enqueues_one_job_per_consumer_with_work_grouped_by_consumer(env, queue, monkeypatch):
    sqs, url = queue
    monkeypatch.setenv("ROTATION_QUEUE_URL", url)
    env.engine().run(only=["billing"])                      # billing has its key; crm, newsletter have none
    result = fanout.planner_handler({}, engine=env.engine(), sqs=sqs)
    assert sorted(result["consumers"]) == ["crm", "newsletter"] and result["enqueued"] == 2
    again = fanout.planner_handler({}, engine=env.engine(), sqs=sqs)   # a retried planner: deduplicated
    assert again["enqueued"] == 2
    msgs = _messages(sqs, url)
    assert sorted(json.loads(m["Body"])["consumer"] for m in msgs) == ["crm", "newsletter"]


def test_worker_runs_the_batch_and_reports_only_the_failed_jobs(env):
    def canary(c, key):
        if c.name == "crm":
            raise VerificationFailed("refused")
    event = {"Records": [
        {"messageId": "m1", "body": json.dumps({"consumer": "billing"})},
        {"messageId": "m2", "body": json.dumps({"consumer": "crm"})},
        {"messageId": "m3", "body": json.dumps({"consumer": "nobody"})},
        {"messageId": "m4", "body": "not json"},
    ]}
    out = fanout.worker_handler(event, engine=env.engine(verifiers=[canary]))
    assert sorted(f["itemIdentifier"] for f in out["batchItemFailures"]) == ["m2", "m3", "m4"]
    assert env.state("billing").current.serial == 1
    assert env.state("crm").current is None                 # its first rotation failed the canary


def test_k8s_worker_drains_the_queue_and_leaves_failed_jobs_for_redelivery(env, queue):
    sqs, url = queue
    fanout.enqueue(sqs, url, [{"consumer": n, "action": "bootstrap", "planned_at": "x"}
                              for n in ("billing", "crm", "newsletter")], window="w1")

    def canary(c, key):
        if c.name == "newsletter":
            raise VerificationFailed("refused")
    failures = fanout.drain(env.engine(verifiers=[canary]), sqs, url, wait_seconds=0, max_batches=1)
    assert failures == 1
    assert env.state("billing").current.serial == 1 and env.state("crm").current.serial == 1
    left = _messages(sqs, url)
    assert [json.loads(m["Body"])["consumer"] for m in left] == ["newsletter"]


def test_cli_refuses_a_queue_that_is_not_fifo(capsys):
    assert fanout.main(["plan", "--queue-url", "https://sqs.us-east-1.amazonaws.com/1/jobs"]) == 2
    assert "FIFO" in capsys.readouterr().err
