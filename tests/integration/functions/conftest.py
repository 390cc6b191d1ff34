"""Fixtures for the mail API Lambda tests: one moto server per session, fresh state per test.

boto3 reaches moto through ``AWS_ENDPOINT_URL``; the environment is set per test with
``monkeypatch`` (the root conftest clears ``AWS_*`` before each test).
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

SENDER_DOMAIN = "example.com"
CONFIGURATION_SET = "mail-api-config"
TABLE_NAME = "mail-api-messages"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server on a free loopback port for the whole session; yields its base URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class MailBackend:
    """Views of what moto holds: messages SES accepted and items DynamoDB stored."""

    endpoint: str
    mac_key_id: str | None = None

    def _client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def sent_messages(self) -> list[dict[str, Any]]:
        """Every message SES accepted (simple and raw), from moto's ``/moto-api/data.json``."""
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=60) as response:
            data = json.load(response)
        ses = data.get("ses", {})
        return [*ses.get("Message", []), *ses.get("RawMessage", [])]

    def sent_recipient_count(self) -> int:
        """SES's own counter (``GetSendQuota.SentLast24Hours``), a second, independent view."""
        return int(self._client("ses").get_send_quota()["SentLast24Hours"])

    def items(self) -> list[dict[str, Any]]:
        """Every audit item, deserialized."""
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        raw = self._client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
        return [{k: deserializer.deserialize(v) for k, v in item.items()} for item in raw]

    def mac(self, data: bytes) -> str:
        """HMAC-SHA-256 (hex) of ``data`` under the stack's audit MAC key, computed by moto's KMS."""
        response = self._client("kms").generate_mac(
            KeyId=self.mac_key_id, Message=data, MacAlgorithm="HMAC_SHA_256"
        )
        return response["Mac"].hex()


@pytest.fixture
def mail_backend(moto_endpoint, monkeypatch) -> MailBackend:
    """Reset moto, then create the SES v2 identity + configuration set, the DynamoDB table and the
    KMS HMAC key for the audit MACs (``AUDIT_MAC_KEY_ID``)."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "SENDER_IDENTITY": SENDER_DOMAIN,
        "CONFIGURATION_SET": CONFIGURATION_SET,
        "TABLE_NAME": TABLE_NAME,
        "POWERTOOLS_SERVICE_NAME": "mail-api",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.delenv("POWERTOOLS_EVENT_HANDLER_DEBUG", raising=False)
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=60).close()
    backend = MailBackend(moto_endpoint)
    sesv2 = backend._client("sesv2")
    sesv2.create_configuration_set(
        ConfigurationSetName=CONFIGURATION_SET, DeliveryOptions={"TlsPolicy": "REQUIRE"}
    )
    sesv2.create_email_identity(EmailIdentity=SENDER_DOMAIN, ConfigurationSetName=CONFIGURATION_SET)
    backend._client("dynamodb").create_table(
        TableName=TABLE_NAME,
        KeySchema=[{"AttributeName": "message_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "message_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    key = backend._client("kms").create_key(
        KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC", Description="audit MACs (test)"
    )
    backend.mac_key_id = key["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("AUDIT_MAC_KEY_ID", backend.mac_key_id)
    return backend


class FakeLambdaContext:
    """The attributes powertools' ``inject_lambda_context`` reads."""

    function_name = "mail-api-send-message"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mail-api-send-message"
    aws_request_id = "lambda-req-0001"


def _make_event(
    body: Any = None,
    *,
    raw_body: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/v1/messages",
    is_base64_encoded: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST proxy (payload v1) event; ``body`` is JSON-encoded unless ``raw_body``."""
    if raw_body is None and body is not None:
        raw_body = json.dumps(body)
    if headers is None:
        headers = {"Content-Type": "application/json", "x-api-key": "k" * 40}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "apigw-req-1234",
            "identity": {"apiKeyId": "key-id-abc123", "sourceIp": "203.0.113.7", "apiKey": "k" * 40},
        },
        "body": raw_body,
        "isBase64Encoded": is_base64_encoded,
    }


def _invoke(event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Call the handler; returns (status, parsed JSON body, response headers)."""
    from infra.functions.send_message import handler

    response = handler(event, FakeLambdaContext())
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    headers = dict(response.get("headers") or {})
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(values)
    return response["statusCode"], json.loads(body), headers


@pytest.fixture
def make_event():
    """The event builder (see ``_make_event``)."""
    return _make_event


@pytest.fixture
def invoke(mail_backend):
    """Invoke the handler against the fresh moto state: ``invoke(event) -> (status, body, headers)``."""
    return _invoke
