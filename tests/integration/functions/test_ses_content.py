"""Building the SES v2 SendEmail arguments and the MIME message (pure)."""

from __future__ import annotations

import base64
import email
import email.policy
import subprocess
import sys
from pathlib import Path

from infra.functions.ses_content import build_ses_request
from infra.functions.validation import validate_message

FUNCTIONS_DIR = Path(__file__).resolve().parents[3] / "infra" / "functions"


def message(**overrides):
    value = {
        "from": {"email": "alerts@example.com", "name": "Ops"},
        "to": ["a@example.org"],
        "subject": "Hi",
        "text": "t",
    }
    value.update(overrides)
    return validate_message(value, sender_identity="example.com")


def test_simple_content_without_attachments_or_headers():
    request = build_ses_request(message(html="<p>h</p>", reply_to="r@example.com"), configuration_set="cs")
    assert request.content_kind == "simple"
    kwargs = request.kwargs
    assert kwargs["ConfigurationSetName"] == "cs"
    assert kwargs["FromEmailAddress"] == "Ops <alerts@example.com>"
    assert kwargs["ReplyToAddresses"] == ["r@example.com"]
    assert kwargs["Destination"] == {"ToAddresses": ["a@example.org"]}
    assert kwargs["Content"]["Simple"]["Body"]["Html"]["Data"] == "<p>h</p>"
    assert kwargs["Content"]["Simple"]["Subject"] == {"Data": "Hi", "Charset": "UTF-8"}


def test_raw_mime_is_ascii_encodes_unicode_and_omits_bcc():
    pdf = b"%PDF-1.7 \xe2\x82\xac"
    request = build_ses_request(
        message(
            subject="Rapport trimestriel — été",
            bcc=["hidden@example.net"],
            html="<p>é</p>",
            attachments=[
                {
                    "filename": "résumé.pdf",
                    "content_type": "application/pdf",
                    "content": base64.b64encode(pdf).decode(),
                }
            ],
        ),
        configuration_set="cs",
    )
    assert request.content_kind == "raw"
    raw = request.kwargs["Content"]["Raw"]["Data"]
    assert raw.isascii() and b"\r\n" in raw and request.raw_bytes == len(raw)
    assert b"hidden@example.net" not in raw
    assert request.kwargs["Destination"]["BccAddresses"] == ["hidden@example.net"]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Rapport trimestriel — été"
    assert parsed.get_body(("plain",)).get_content().rstrip("\r\n") == "t"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>é</p>"
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_filename() == "résumé.pdf"
    assert attachment.get_content() == pdf


def test_lambda_package_is_self_contained():
    """Imported the way Lambda does (the directory's modules at the top level), from an empty cwd,
    the handler loads and pulls in nothing from rotation/, policies/ or infra components."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import send_message, validation, ses_content, audit_record;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rotation', 'policies', 'infra'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, str(FUNCTIONS_DIR)],
        check=False,
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
