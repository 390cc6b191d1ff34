"""Sample consuming app: uses the current mail API key from Vault and follows rotations.

* pulls the key with :class:`rotation.client.keys.KeyClient` (AppRole, or whatever ``VAULT_AUTH_METHOD`` says);
* optionally listens for the rotation job's signed webhook (:mod:`rotation.client.receiver`) so a new key
  is used as soon as it is pushed;
* every ``--interval-ms`` sends ``POST <url>`` with the key in the ``x-api-key`` header; on 403 it calls
  ``report_forbidden()`` so the next request re-reads Vault;
* prints which key serial (and fingerprint, never the key) each request used.

``--dry-run`` sends nothing: it only fetches and prints the serial/fingerprint periodically.

Environment: ``VAULT_ADDR``, ``VAULT_AUTH_METHOD=approle``, ``VAULT_ROLE_ID``, ``VAULT_SECRET_ID``,
``MAIL_API_CONSUMER``, optionally ``VAULT_KV_MOUNT``, ``VAULT_KV_PREFIX``, ``VAULT_CACERT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request

from rotation.client.keys import KeyClient, KeyClientError
from rotation.client.receiver import WebhookReceiver, serve_webhook

DEFAULT_FROM = "alerts@example.com"  # the dev gateway's sender identity is example.com


def sample_message(sender: str = DEFAULT_FROM) -> dict:
    """A valid ``POST /v1/messages`` body (infra/functions/README.md) from ``sender``."""
    return {"from": sender, "to": ["ops@example.org"], "subject": "key rotation sample", "text": "hello"}


SAMPLE_MESSAGE = sample_message()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("MAIL_API_URL") or "http://127.0.0.1:8080/v1/messages",
                   help="mail API endpoint (default $MAIL_API_URL, else the dev gateway's default "
                        "http://127.0.0.1:8080/v1/messages)")
    p.add_argument("--interval-ms", type=int, default=1000, help="time between requests (ms)")
    p.add_argument("--refresh-seconds", type=float, default=60.0, help="Vault version check interval (s)")
    p.add_argument("--iterations", type=int, default=0, help="stop after N requests (0: run until Ctrl-C)")
    p.add_argument("--dry-run", action="store_true", help="do not call the API; print the key serial only")
    p.add_argument("--webhook-port", type=int, default=None, help="listen for key webhooks on this port")
    p.add_argument("--webhook-host", default="127.0.0.1")
    p.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout per request (s)")
    p.add_argument("--from", dest="sender", default=DEFAULT_FROM,
                   help="sender address; must be at the API's SENDER_IDENTITY (dev gateway: example.com)")
    p.add_argument("--min-forced-seconds", type=float, default=None,
                   help="minimum seconds between forced Vault re-reads after a 403 (client default 5)")
    return p.parse_args(argv)


def send_message(url: str, api_key: str, timeout: float, message: dict | None = None) -> tuple[int, str]:
    """POST ``message`` with the key in ``x-api-key``; returns (HTTP status, ``x-amzn-ErrorType`` or "").
    Raises ``OSError`` when there is no answer."""
    req = urllib.request.Request(url, data=json.dumps(message or SAMPLE_MESSAGE).encode(), method="POST",
                                 headers={"x-api-key": api_key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("x-amzn-ErrorType") or ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("x-amzn-ErrorType") or ""


def send(url: str, api_key: str, timeout: float) -> int:
    return send_message(url, api_key, timeout)[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        extra = {} if args.min_forced_seconds is None else {"min_forced_interval": args.min_forced_seconds}
        client = KeyClient.from_env(refresh_interval=args.refresh_seconds, **extra)
    except KeyClientError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    server = None
    if args.webhook_port is not None:
        receiver = WebhookReceiver(client.webhook_signing_secret(), client)
        server = serve_webhook(receiver, args.webhook_host, args.webhook_port)
        print(f"listening for key webhooks on http://{args.webhook_host}:{server.server_address[1]}/", flush=True)
    message = sample_message(args.sender)
    using: int | None = None
    n = 0
    try:
        while not args.iterations or n < args.iterations:
            n += 1
            try:
                key = client.current_key()
            except KeyClientError as exc:
                print(f"[{n}] no usable key: {exc}", flush=True)
            else:
                if using is not None and key.serial != using:
                    print(f"[{n}] now using serial {key.serial} (was {using})", flush=True)
                using = key.serial
                if args.dry_run:
                    print(f"[{n}] serial={key.serial} key_id={key.key_id} fingerprint={key.fingerprint}", flush=True)
                else:
                    try:
                        status, error_type = send_message(args.url, key.value, args.timeout, message)
                    except OSError as exc:
                        print(f"[{n}] serial={key.serial}: request failed ({type(exc).__name__})", flush=True)
                    else:
                        suffix = f" {error_type}" if error_type else ""
                        print(f"[{n}] serial={key.serial} fingerprint={key.fingerprint} -> HTTP {status}{suffix}",
                              flush=True)
                        if status == 403:
                            client.report_forbidden(key)
            time.sleep(args.interval_ms / 1000)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
