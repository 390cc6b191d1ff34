"""Issue 12, item 15: with DEBUG logging (a Lambda with AWS_LAMBDA_LOG_LEVEL=DEBUG, or a CLI
configured at DEBUG) botocore logs request and response bodies, which carry key values. A secret
must reach no log record and no log stream at any level: third-party loggers are pinned at WARNING
and every record is scrubbed (rotation.audit.install_log_redaction). Real boto3 calls against the
moto server carry a planted value that is *not* registered with the redactor, so only the pinning
can keep it out; the rotation's own key values (registered) are checked too."""

from __future__ import annotations

import io
import logging
import secrets

import pytest
import yaml

from rotation import aws_lambda
from rotation.audit import install_log_redaction


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record):
        self.texts.append(logging.Formatter("%(name)s %(message)s").format(record))


@pytest.fixture
def pristine_logging():
    """Save and restore the process's logging set-up (levels, handlers, record factory)."""
    root = logging.getLogger()
    saved = (root.level, root.handlers[:], logging.getLogRecordFactory(),
             {n: lg.level for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)})
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.setLogRecordFactory(saved[2])
    for n, level in saved[3].items():
        logging.getLogger(n).setLevel(level)


def _configure_like_cli(stream):
    logging.basicConfig(level=logging.DEBUG, stream=stream, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


def _configure_like_lambda(stream, env, tmp_path, monkeypatch):
    """The Lambda runtime puts a handler on the root logger at AWS_LAMBDA_LOG_LEVEL; our handler
    runs a real rotation, installing the redaction itself."""
    root = logging.getLogger()
    root.handlers[:] = [logging.StreamHandler(stream)]
    root.setLevel(logging.DEBUG)
    cfile = tmp_path / "consumers.yaml"
    cfile.write_text(yaml.safe_dump({
        "version": 1, "usage_plans": {"standard": "secure-mail-api-dev-standard"},
        "consumers": [{"name": "crm", "tier": "standard"}]}))
    monkeypatch.setenv("ROTATION_CONSUMERS_FILE", str(cfile))
    monkeypatch.setenv("ROTATION_AUDIT_LOG", str(tmp_path / "lambda-audit.jsonl"))
    result = aws_lambda.handler({})
    assert result["failed"] == 0, result


@pytest.mark.parametrize("entry", ["cli", "lambda"])
def test_no_secret_reaches_any_log_at_debug(env, tmp_path, monkeypatch, pristine_logging, entry):
    stream, records = io.StringIO(), Records()
    if entry == "cli":
        _configure_like_cli(stream)
    else:
        _configure_like_lambda(stream, env, tmp_path, monkeypatch)
    logging.getLogger().addHandler(records)
    direct = Records()                                     # like boto3.set_stream_logger("botocore")
    logging.getLogger("botocore").addHandler(direct)
    planted = "PLANTED" + secrets.token_hex(20)            # an API key value, never registered
    session = env.stack.aws_session()
    apigw = session.client("apigateway", endpoint_url=env.stack.aws_endpoint)
    sm = session.client("secretsmanager", endpoint_url=env.stack.aws_endpoint)
    key = apigw.create_api_key(name="planted", value=planted, enabled=True)
    assert apigw.get_api_key(apiKey=key["id"], includeValue=True)["value"] == planted   # in a response body
    sm.create_secret(Name="planted/secret", SecretString=planted)
    logging.getLogger("botocore.endpoint").setLevel(logging.DEBUG)   # someone turns it back on
    sm.get_secret_value(SecretId="planted/secret")
    logging.getLogger("botocore.endpoint").setLevel(logging.NOTSET)
    values = [planted]
    if entry == "lambda":
        values.append(env.state("crm").current.value)
    logged = [stream.getvalue(), *records.texts, *direct.texts]
    assert any(logged), "nothing was logged: the test proves nothing"
    for value in values:
        assert not any(value in text for text in logged)
