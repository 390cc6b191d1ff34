"""Fan-out of the scheduled rotation for large fleets (stack config ``rotationSchedule.fanout``).

A planner Lambda (``rotation.fanout.planner_handler``, on its own EventBridge Scheduler schedule)
enqueues one job per consumer with work onto an SQS **FIFO** queue (message group = consumer:
one consumer never runs twice at once); worker Lambdas (``rotation.fanout.worker_handler``, an
SQS event source with ``ReportBatchItemFailures``) run the jobs on the existing engine. A job
that keeps failing moves to a FIFO dead-letter queue after ``MAX_RECEIVES`` deliveries, and an
alarm fires on it. The single-run scheduled rotator stays the default for small fleets.

**Sized to AWS's limits.** API Gateway's control plane allows 10 requests/s (burst 40) per
account and region, 5/s for CreateApiKey/DeleteApiKey
(https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html). Each worker's
limiter gets ``1/WORKER_CONCURRENCY`` of them and the worker function's reserved concurrency
(and the event source's maximum concurrency) is ``WORKER_CONCURRENCY``, so all workers together
stay within the account's limits; each worker works a batch of up to 10 consumers at once and
overlaps their propagation waits.

**Why SQS rather than a Step Functions distributed map.** FIFO message groups give per-consumer
exclusivity for free (a map does not: two overlapping executions could pick the same consumer,
and only the Vault lease would stop them); partial batch failures plus a redrive policy give
per-consumer retries and a dead-letter queue without a state machine to keep in step with the
engine; and the same planner/worker split runs unchanged on Kubernetes (CronJob + Job with
parallel pods draining the queue), which a state machine would not.

The visibility timeout is 6x the worker's timeout, as AWS advises for SQS event sources
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components._common import json_doc
from infra.components.monitoring import runbook
from infra.components.rotator import (
    MEMORY_MB,
    SCHEDULE_GROUP,
    TIMEOUT_SECONDS,
    ScheduledRotator,
    service_trust_policy,
)

__all__ = ["MAX_RECEIVES", "WORKER_CONCURRENCY", "FanOut", "FanOutArgs", "worker_limits"]

PLANNER_HANDLER = "rotation.fanout.planner_handler"
WORKER_HANDLER = "rotation.fanout.worker_handler"
WORKER_CONCURRENCY = 2          # worker functions at once (reserved concurrency = SQS maximum concurrency)
WORKER_BATCH = 10               # jobs per invocation (a FIFO event source takes at most 10)
MAX_RECEIVES = 5                # deliveries before a job moves to the dead-letter queue
AWS_RATE, AWS_BURST, AWS_KEY_WRITES = 10.0, 40, 5.0


def worker_limits(concurrency: int = WORKER_CONCURRENCY) -> dict[str, str]:
    """Each worker's share of the account's API Gateway limits (``ROTATION_APIGW_*``)."""
    return {"ROTATION_APIGW_RATE": f"{AWS_RATE / concurrency:g}",
            "ROTATION_APIGW_BURST": str(max(1, int(AWS_BURST // concurrency))),
            "ROTATION_APIGW_KEY_RATE": f"{AWS_KEY_WRITES / concurrency:g}",
            "ROTATION_WORKERS": str(WORKER_BATCH)}


@dataclass
class FanOutArgs:
    prefix: str
    region: str
    account_id: pulumi.Input[str]
    rotator: ScheduledRotator          # its role, code, environment and log group are reused
    schedule_expression: str
    data_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)


class FanOut(pulumi.ComponentResource):
    """Jobs queue + DLQ (FIFO, CMK-encrypted), planner and worker functions, the planner's
    schedule, the event source mapping and the DLQ alarm.

    Attributes: ``queue``, ``dlq``, ``planner``, ``worker``, ``mapping``, ``queue_policy``,
    ``schedule``, ``scheduler_role``, ``dlq_alarm``.
    """

    def __init__(self, name: str, args: FanOutArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:rotation:FanOut", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rot = args.rotator
        account = pulumi.Output.from_input(args.account_id)
        tags = dict(args.tags)
        self.dlq = aws.sqs.Queue(
            f"{name}-dlq", name=f"{args.prefix}-rotation-jobs-dlq.fifo", fifo_queue=True,
            kms_master_key_id=args.data_key_arn, kms_data_key_reuse_period_seconds=300,
            message_retention_seconds=14 * 86400, tags=tags, opts=child)
        self.queue = aws.sqs.Queue(
            f"{name}-queue", name=f"{args.prefix}-rotation-jobs.fifo", fifo_queue=True,
            content_based_deduplication=False, deduplication_scope="messageGroup",
            fifo_throughput_limit="perMessageGroupId",
            kms_master_key_id=args.data_key_arn, kms_data_key_reuse_period_seconds=300,
            visibility_timeout_seconds=6 * TIMEOUT_SECONDS, message_retention_seconds=86400,
            redrive_policy=self.dlq.arn.apply(
                lambda a: json.dumps({"deadLetterTargetArn": a, "maxReceiveCount": MAX_RECEIVES})),
            tags=tags, opts=child)
        deny_plain = lambda arn: {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
                                  "Action": "sqs:*", "Resource": arn,
                                  "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
        self.queue_policy = aws.sqs.QueuePolicy(
            f"{name}-queue-policy", queue_url=self.queue.url,
            policy=json_doc({"Version": "2012-10-17", "Statement": [deny_plain(self.queue.arn)]}), opts=child)
        self.dlq_policy = aws.sqs.QueuePolicy(
            f"{name}-dlq-policy", queue_url=self.dlq.url,
            policy=json_doc({"Version": "2012-10-17", "Statement": [deny_plain(self.dlq.arn)]}), opts=child)
        self.queue_access = aws.iam.RolePolicy(
            f"{name}-queue-access", role=rot.role.id,
            policy=json_doc({"Version": "2012-10-17", "Statement": [
                {"Sid": "PlanJobs", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": self.queue.arn},
                {"Sid": "WorkJobs", "Effect": "Allow",
                 "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                            "sqs:ChangeMessageVisibility"], "Resource": self.queue.arn},
            ]}), opts=child)

        fn = rot.function

        def merged_environment(a: list[Any]) -> aws.lambda_.FunctionEnvironmentArgsDict:
            """The rotator function's variables, then ``extra_env``'s (``a``: the two resolved inputs)."""
            return {"variables": {**((a[0] or {}).get("variables") or {}), **a[1]}}

        def function(role: str, handler: str, extra_env: pulumi.Input[dict[str, Any]], **kw: Any
                     ) -> aws.lambda_.Function:
            env = pulumi.Output.all(fn.environment, extra_env).apply(merged_environment)
            return aws.lambda_.Function(
                f"{name}-{role}", name=f"{args.prefix}-rotation-{role}",
                description=f"secure-mail-api: rotation fan-out {role} ({handler})",
                runtime=fn.runtime, handler=handler, code=fn.code, s3_bucket=fn.s3_bucket, s3_key=fn.s3_key,
                code_signing_config_arn=fn.code_signing_config_arn, layers=fn.layers, role=rot.role.arn,
                timeout=TIMEOUT_SECONDS, memory_size=MEMORY_MB, tracing_config={"mode": "Active"},
                dead_letter_config=fn.dead_letter_config, kms_key_arn=args.data_key_arn, environment=env,
                logging_config=fn.logging_config, tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.queue_access]), **kw)

        self.planner = function("planner", PLANNER_HANDLER, {"ROTATION_QUEUE_URL": self.queue.url},
                                reserved_concurrent_executions=1)
        self.worker = function("worker", WORKER_HANDLER, worker_limits(),
                               reserved_concurrent_executions=WORKER_CONCURRENCY)
        self.mapping = aws.lambda_.EventSourceMapping(
            f"{name}-mapping", event_source_arn=self.queue.arn, function_name=self.worker.arn,
            batch_size=WORKER_BATCH, function_response_types=["ReportBatchItemFailures"],
            scaling_config={"maximum_concurrency": WORKER_CONCURRENCY}, enabled=True, opts=child)

        self.scheduler_role = aws.iam.Role(
            f"{name}-scheduler-role", name=f"{args.prefix}-rotation-planner-scheduler",
            description="EventBridge Scheduler: invoke the rotation planner only",
            assume_role_policy=account.apply(lambda a: json.dumps(service_trust_policy("scheduler.amazonaws.com", a))),
            max_session_duration=3600, tags=tags, opts=child)
        self.scheduler_policy = aws.iam.RolePolicy(
            f"{name}-scheduler-policy", role=self.scheduler_role.id,
            policy=json_doc({"Version": "2012-10-17", "Statement": [
                {"Sid": "InvokePlannerOnly", "Effect": "Allow", "Action": "lambda:InvokeFunction",
                 "Resource": self.planner.arn}]}), opts=child)
        self.schedule = aws.scheduler.Schedule(
            f"{name}-schedule", name=f"{args.prefix}-rotation-planner", group_name=SCHEDULE_GROUP,
            description="secure-mail-api: plan one rotation job per consumer with work",
            kms_key_arn=args.data_key_arn, schedule_expression=args.schedule_expression,
            schedule_expression_timezone="UTC", flexible_time_window={"mode": "OFF"}, state="ENABLED",
            target={"arn": self.planner.arn, "role_arn": self.scheduler_role.arn, "input": "{}",
                    "retry_policy": {"maximum_retry_attempts": 0, "maximum_event_age_in_seconds": 3600}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.scheduler_policy]))
        self.dlq_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-dlq-alarm", name=f"{args.prefix}-rotation-jobs-dead-letters",
            alarm_description=f"Rotation jobs failed {MAX_RECEIVES} times and reached the dead-letter queue; "
                              "see the worker's log group and the audit events, then redrive them. "
                              + runbook("rotation-jobs-dead-letters"),
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.dlq.name}, statistic="Maximum", period=300, evaluation_periods=1,
            threshold=0, comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn], tags=tags, opts=child)
        self.register_outputs({"queue_url": self.queue.url, "dlq_arn": self.dlq.arn,
                               "planner_name": self.planner.name, "worker_name": self.worker.name})
