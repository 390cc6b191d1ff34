"""Email: the SES v2 identity (DKIM, MAIL FROM), configuration set and bounce/complaint feedback.

Realizes docs/security-baseline.md §1.12: configuration set with ``tls_policy=REQUIRE`` (CKV_AWS_365),
reputation metrics (feeds alarms 1-4 in §3), account suppression of bounces/complaints, an
event destination to a CMK-encrypted SNS topic (SNS.1, SNS.4, AwsSolutions-SNS3) that fans out
to an encrypted SQS queue with a DLQ (SQS.1/3, SQS3, SQS4), and a CloudWatch event destination
that publishes ``Reject``/``RenderingFailure`` metrics (alarm 17).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components._common import deny_insecure_transport, json_doc, service_publish_topic_policy

FEEDBACK_EVENTS = ["BOUNCE", "COMPLAINT", "REJECT", "RENDERING_FAILURE", "DELIVERY_DELAY"]
METRIC_EVENTS = ["SEND", "REJECT", "RENDERING_FAILURE", "BOUNCE", "COMPLAINT"]


@dataclass
class EmailArgs:
    """Inputs of :class:`Email`: sender domain, MAIL FROM domain, configuration-set name, CMK, DLQ."""

    prefix: str
    sender_domain: str
    mail_from_domain: str
    configuration_set_name: str
    data_key_arn: pulumi.Input[str]
    dlq_arn: pulumi.Input[str]
    account_id: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)


class Email(pulumi.ComponentResource):
    """SES v2 identity + configuration set + feedback topic/queue.

    Attributes: ``configuration_set``, ``identity``, ``feedback_topic``, ``feedback_queue``.
    """

    def __init__(self, name: str, args: EmailArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:email:Email", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.configuration_set = aws.sesv2.ConfigurationSet(
            f"{name}-configuration-set",
            configuration_set_name=args.configuration_set_name,
            delivery_options={"tls_policy": "REQUIRE"},
            reputation_options={"reputation_metrics_enabled": True},
            sending_options={"sending_enabled": True},
            suppression_options={"suppressed_reasons": ["BOUNCE", "COMPLAINT"]},
            tags=dict(args.tags),
            opts=child)
        self.identity = aws.sesv2.EmailIdentity(
            f"{name}-identity",
            email_identity=args.sender_domain,
            configuration_set_name=self.configuration_set.configuration_set_name,
            dkim_signing_attributes={"next_signing_key_length": "RSA_2048_BIT"},
            tags=dict(args.tags),
            opts=child)
        aws.sesv2.EmailIdentityMailFromAttributes(
            f"{name}-mail-from", email_identity=self.identity.email_identity,
            mail_from_domain=args.mail_from_domain, behavior_on_mx_failure="REJECT_MESSAGE", opts=child)

        self.feedback_topic = aws.sns.Topic(
            f"{name}-feedback", name=f"{args.prefix}-ses-feedback", kms_master_key_id=args.data_key_arn,
            signature_version=2, tags=dict(args.tags), opts=child)
        self.feedback_topic_policy = aws.sns.TopicPolicy(
            f"{name}-feedback-policy", arn=self.feedback_topic.arn,
            policy=service_publish_topic_policy(self.feedback_topic.arn, sid="AllowSesPublishFromOwnConfigurationSet",
                                                service="ses.amazonaws.com", account_id=args.account_id),
            opts=child)
        self.feedback_queue = aws.sqs.Queue(
            f"{name}-feedback-queue", name=f"{args.prefix}-ses-feedback",
            kms_master_key_id=args.data_key_arn, kms_data_key_reuse_period_seconds=300,
            visibility_timeout_seconds=60, message_retention_seconds=1_209_600,
            redrive_policy=pulumi.Output.from_input(args.dlq_arn).apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 5})),
            tags=dict(args.tags), opts=child)
        self.feedback_queue_policy = aws.sqs.QueuePolicy(
            f"{name}-feedback-queue-policy", queue_url=self.feedback_queue.url,
            policy=json_doc({"Version": "2012-10-17", "Statement": [
                {"Sid": "AllowFeedbackTopic", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                 "Action": "sqs:SendMessage", "Resource": self.feedback_queue.arn,
                 "Condition": {"ArnEquals": {"aws:SourceArn": self.feedback_topic.arn}}},
                deny_insecure_transport([self.feedback_queue.arn], "sqs:*"),
            ]}),
            opts=child)
        aws.sns.TopicSubscription(
            f"{name}-feedback-subscription", topic=self.feedback_topic.arn, protocol="sqs",
            endpoint=self.feedback_queue.arn, raw_message_delivery=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.feedback_queue_policy]))
        aws.sesv2.ConfigurationSetEventDestination(
            f"{name}-feedback-destination",
            configuration_set_name=self.configuration_set.configuration_set_name,
            event_destination_name="feedback-sns",
            event_destination={"enabled": True, "matching_event_types": FEEDBACK_EVENTS,
                               "sns_destination": {"topic_arn": self.feedback_topic.arn}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.feedback_topic_policy]))
        aws.sesv2.ConfigurationSetEventDestination(
            f"{name}-metrics-destination",
            configuration_set_name=self.configuration_set.configuration_set_name,
            event_destination_name="metrics-cloudwatch",
            event_destination={"enabled": True, "matching_event_types": METRIC_EVENTS,
                               "cloud_watch_destination": {"dimension_configurations": [{
                                   "dimension_name": "ses:configuration-set",
                                   "dimension_value_source": "MESSAGE_TAG",
                                   "default_dimension_value": args.configuration_set_name}]}},
            opts=child)
        self.register_outputs({"identity_arn": self.identity.arn,
                               "configuration_set_arn": self.configuration_set.arn})
