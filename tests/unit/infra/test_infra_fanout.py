"""The rotation fan-out (stack config ``rotationSchedule.fanout``): infra/components/fanout.py.

A planner on a schedule enqueues jobs onto a CMK-encrypted SQS FIFO queue; workers with reserved
concurrency consume them with partial batch failures; a FIFO DLQ with an alarm. Checked under
Pulumi mocks, from the recorded resources."""

from __future__ import annotations

import json

import pulumi

from infra.components import fanout as fo
from infra.config import PROJECT, dev_stack_config
from infra.mocks import run_program

SCHEDULE_KEY = f"{PROJECT}:rotationSchedule"


def _cfg(fanout: bool) -> dict[str, str]:
    cfg = dev_stack_config()
    schedule = json.loads(cfg[SCHEDULE_KEY])
    schedule["fanout"] = fanout
    cfg[SCHEDULE_KEY] = json.dumps(schedule)
    return cfg


def test_worker_limits_add_up_to_the_account_limits():
    lim = fo.worker_limits(fo.WORKER_CONCURRENCY)
    assert float(lim["ROTATION_APIGW_RATE"]) * fo.WORKER_CONCURRENCY <= 10
    assert float(lim["ROTATION_APIGW_KEY_RATE"]) * fo.WORKER_CONCURRENCY <= 5
    assert int(lim["ROTATION_APIGW_BURST"]) * fo.WORKER_CONCURRENCY <= 40


@pulumi.runtime.test
def test_fanout_off_by_default_declares_no_queue_or_worker(h):
    run = run_program(_cfg(False))
    assert run.stack.fanout is None

    def check(resources):
        assert not [r for r in resources if r.typ == "secure-mail-api:rotation:FanOut"]
        assert not [r for r in resources if r.typ == "aws:lambda/eventSourceMapping:EventSourceMapping"]
    return h.check_recorded(run, check)


@pulumi.runtime.test
def test_fanout_declares_fifo_queues_workers_sized_to_aws_limits_and_a_dlq_alarm(h):
    run = run_program(_cfg(True))
    assert run.stack.fanout is not None

    def check(resources):
        queues = {r.name: r.inputs for r in resources if r.typ == "aws:sqs/queue:Queue"}
        jobs, dlq = queues["rotation-fanout-queue"], queues["rotation-fanout-dlq"]
        assert jobs["fifoQueue"] is True and dlq["fifoQueue"] is True
        assert jobs["name"].endswith(".fifo") and dlq["name"].endswith(".fifo")
        assert jobs["kmsMasterKeyId"] and dlq["kmsMasterKeyId"]                      # CMK-encrypted
        assert json.loads(jobs["redrivePolicy"])["maxReceiveCount"] == fo.MAX_RECEIVES
        assert jobs["visibilityTimeoutSeconds"] >= 6 * 300
        fns = {r.name: r.inputs for r in resources if r.typ == "aws:lambda/function:Function"}
        worker, planner = fns["rotation-fanout-worker"], fns["rotation-fanout-planner"]
        assert worker["handler"] == "rotation.fanout.worker_handler"
        assert planner["handler"] == "rotation.fanout.planner_handler"
        assert worker["reservedConcurrentExecutions"] == fo.WORKER_CONCURRENCY
        env = worker["environment"]["variables"]
        assert float(env["ROTATION_APIGW_RATE"]) * fo.WORKER_CONCURRENCY <= 10
        assert "ROTATION_QUEUE_URL" in planner["environment"]["variables"]
        (mapping,) = [r.inputs for r in resources if r.typ == "aws:lambda/eventSourceMapping:EventSourceMapping"]
        assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["scalingConfig"]["maximumConcurrency"] == fo.WORKER_CONCURRENCY
        alarms = [r.inputs for r in resources if r.typ == "aws:cloudwatch/metricAlarm:MetricAlarm"
                  and r.name == "rotation-fanout-dlq-alarm"]
        assert alarms and alarms[0]["alarmActions"] and alarms[0]["threshold"] == 0
        schedules = [r.inputs for r in resources if r.typ == "aws:scheduler/schedule:Schedule"
                     and r.name == "rotation-fanout-schedule"]
        assert schedules and schedules[0]["kmsKeyArn"]
    return h.check_recorded(run, check)
