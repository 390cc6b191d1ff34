"""DEVELOPMENT AND TEST TOOL — not API Gateway, not for production.

A local stand-in for the mail API's API Gateway stage, on loopback, so that rotations can be
proven against real traffic (``bench/zero_downtime.py``) and the rotation's test step has a real
endpoint for its canary (:mod:`rotation.verifiers.canary`). It lives in ``rotation/``, never in
``infra/functions/`` (the directory zipped as the Lambda code), so it is not in the Lambda
package.

What it does, in API Gateway's order (REST API, API-key-required method, usage plans):

1. **Route.** Only ``POST /v1/messages`` exists, as served by production's custom domain (the
   Pulumi program maps the stage at the empty base path and disables the execute-api endpoint,
   see ``infra/components/api.py``). Any other path or method answers the routing error, as REST
   APIs do: ``403 {"message":"Missing Authentication Token"}`` with
   ``x-amzn-ErrorType: MissingAuthenticationTokenException``.
2. **API key** from the ``x-api-key`` header (case-insensitive). Missing, unknown, disabled, or not
   in a usage plan attached to ``(rest_api_id, stage)``: ``403 {"message":"Forbidden"}`` with
   ``x-amzn-ErrorType: ForbiddenException``. Error types and bodies: AWS Knowledge Center, "How do
   I troubleshoot HTTP 403 errors from API Gateway?" and the gateway response types
   ``MISSING_AUTHENTICATION_TOKEN``, ``INVALID_API_KEY`` and ``THROTTLED``
   (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html).
3. **Throttle** per key from its usage plan's ``throttle.rateLimit`` (requests/s) and
   ``burstLimit`` (requests): a token bucket per key, non-blocking; empty bucket ->
   ``429 {"message":"Too Many Requests"}`` with ``x-amzn-ErrorType: TooManyRequestsException``.
   Quotas are not enforced.
4. **Integration.** The real Lambda handler ``infra/functions/send_message.py`` (``handler``), loaded from its code
   directory like Lambda does, is called in
   process with an API Gateway REST proxy (payload v1) event; its ``statusCode``, ``headers`` and
   ``body`` are returned, plus ``x-amzn-RequestId``. The handler is not thread-safe (powertools'
   resolver keeps the current event in a module global), so each of ``concurrency`` warm
   "instances" (independent copies of the handler module) serves one request at a time.

Keys come from the AWS endpoint (the embedded stack's moto server) with ``GetApiKeys
(includeValues)``, ``GetUsagePlans`` and ``GetUsagePlanKeys``, cached for ``key_cache_seconds``
(default 2 s). AWS does not document how long the data plane caches keys and plans; AWS answers
on re:Post put enabling/disabling a key at "within approximately 10 seconds", and docs/architecture.md
records reports from seconds to minutes. The cache makes the same kind of window visible locally:
a new key is refused for up to ``key_cache_seconds`` after it was created, which is what the
rotation's canary must wait out.

**Propagation** (``propagation_seconds``, default 0): on top of the cache, a change in whether a
key is honoured (a new key, a key enabled/disabled, attached to or detached from a plan, deleted)
takes effect only ``propagation_seconds`` after the gateway first saw it in a snapshot: until
then the key keeps its old answer (a new key is refused, a disabled key still accepted). This
models the data plane's propagation delay, so a fleet rotation can be benchmarked against it.

Per-key request counters (every request that carried a known key id, whatever its answer) are
exposed in process (:meth:`DevGateway.request_count`, :meth:`DevGateway.usage`) and over HTTP at
the dev-only path ``GET /_dev/usage`` (``Authorization: Bearer <usage_token>``) -> ``{"<key id>": <count>}``; :class:`DevGatewayTraffic`
turns them into a :class:`rotation.backends.traffic.TrafficSignal`.

Start in process::

    with DevGateway(aws_endpoint="http://127.0.0.1:5000") as gw:   # port 0: a free port
        print(gw.url)          # http://127.0.0.1:PORT/v1/messages

or from the command line: :func:`serve_main` (``python -m rotation.dev gateway`` / ``make dev``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import importlib
import importlib.util
import json
import logging
import os
import queue
import secrets
import shlex
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import boto3
from botocore.exceptions import ClientError

from rotation.backends.traffic import UsageEndpointTraffic
from rotation.dev.workspace import (
    DEV_DIR,
    REPO,
    agent_config,
    rotation_command,
    shell_path,
    write_dev_consumers,
)

if TYPE_CHECKING:
    from rotation.dev.stack import DevCredentials, EmbeddedStack

__all__ = [
    "DEFAULT_CONFIGURATION_SET",
    "DEFAULT_SENDER_IDENTITY",
    "DEFAULT_TABLE_NAME",
    "ROUTE",
    "USAGE_PATH",
    "DevGateway",
    "DevGatewayTraffic",
    "NonBlockingBucket",
    "serve_main",
]

log = logging.getLogger(__name__)

ROUTE = "/v1/messages"
USAGE_PATH = "/_dev/usage"
#: API Gateway's payload limit (10 MB, "API Gateway quotas"): a larger body is refused with 413
#: before a byte of it is read.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: Seconds a client may take to send its headers and body (a Content-Length larger than the body
#: sent ends in 408, never a hung worker).
READ_TIMEOUT_SECONDS = 10.0
DEFAULT_SENDER_IDENTITY = "example.com"
DEFAULT_CONFIGURATION_SET = "mail-api-dev"
DEFAULT_TABLE_NAME = "mail-api-dev-messages"
DEV_REGION = "us-east-1"

# API Gateway's default gateway responses (body, x-amzn-ErrorType)
MISSING_TOKEN = (403, {"message": "Missing Authentication Token"}, "MissingAuthenticationTokenException")
FORBIDDEN = (403, {"message": "Forbidden"}, "ForbiddenException")
THROTTLED = (429, {"message": "Too Many Requests"}, "TooManyRequestsException")
INTERNAL = (500, {"message": "Internal server error"}, "InternalServerErrorException")


class NonBlockingBucket:
    """Token bucket that never waits: :meth:`try_take` answers at once.

    ``rate`` tokens per second (API Gateway's ``rateLimit``, requests/s), ``capacity`` tokens at
    most (``burstLimit``, requests). Starts full. Thread-safe.
    """

    def __init__(self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be > 0 requests/s and capacity >= 1 request")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._tokens = float(capacity)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def try_take(self) -> bool:
        """Take one token if there is one; ``False`` means throttle this request."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


@dataclass(frozen=True)
class _KeyEntry:
    key_id: str
    enabled: bool
    plan_id: str | None       # a usage plan of this stage holding the key, or None
    rate: float | None        # requests/s, None = not throttled by the plan
    burst: int | None


class _KeyCache:
    """value -> _KeyEntry, read from the AWS control plane at most every ``ttl`` seconds."""

    def __init__(self, client: Any, rest_api_id: str, stage: str, ttl: float,
                 clock: Callable[[], float] = time.monotonic, propagation: float = 0.0):
        self.client = client
        self.propagation = float(propagation)
        # value -> (the entry still in force, when the change was first seen): see DevGateway
        self._in_force: dict[str, tuple[_KeyEntry | None, float]] = {}
        self._clock = clock
        self.rest_api_id = rest_api_id
        self.stage = stage
        self.ttl = float(ttl)
        self._by_value: dict[str, _KeyEntry] | None = None
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self.refreshes = 0

    def lookup(self, value: str) -> _KeyEntry | None:
        """The entry for ``value`` (reloading when the cache is older than ``ttl``), or None.
        Raises the AWS error only when no snapshot was ever loaded."""
        snap = self._by_value
        if snap is None or self._clock() - self._loaded_at >= self.ttl:
            with self._lock:
                if self._by_value is None or self._clock() - self._loaded_at >= self.ttl:
                    try:
                        loaded = self._load()
                        if self.propagation > 0 and self._by_value is not None:
                            self._note_changes(self._by_value, loaded)
                        self._by_value = loaded
                        self.refreshes += 1
                    except Exception as exc:
                        if self._by_value is None:
                            raise
                        log.warning("dev gateway: key refresh failed (%s); serving the cached keys",
                                    type(exc).__name__)
                    self._loaded_at = self._clock()
                snap = self._by_value
        if self.propagation > 0:
            held = self._in_force.get(value)
            if held is not None and self._clock() - held[1] < self.propagation:
                return held[0]
        return snap.get(value)

    def _note_changes(self, old: dict[str, _KeyEntry], new: dict[str, _KeyEntry]) -> None:
        """Remember, for each key whose honoured state changed between two snapshots, the entry
        that stays in force for ``propagation`` seconds (called with the lock held)."""
        now = self._clock()
        self._in_force = {v: held for v, held in self._in_force.items() if now - held[1] < self.propagation}
        for value in set(old) | set(new):
            before, after = old.get(value), new.get(value)
            if _honoured(before) != _honoured(after) and value not in self._in_force:
                self._in_force[value] = (before, now)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def _paged(self, op: str, items_key: str = "items", **kw) -> list[dict]:
        out: list[dict] = []
        position = None
        while True:
            args = dict(kw, limit=500)
            if position:
                args["position"] = position
            resp = getattr(self.client, op)(**args)
            out.extend(resp.get(items_key) or [])
            position = resp.get("position")
            if not position:
                return out

    def _load(self) -> dict[str, _KeyEntry]:
        plans = {}
        for p in self._paged("get_usage_plans"):
            stages = p.get("apiStages") or []
            if any(s.get("apiId") == self.rest_api_id and s.get("stage") == self.stage for s in stages):
                plans[p["id"]] = p
        plan_of: dict[str, str] = {}
        for plan_id in plans:
            for k in self._paged("get_usage_plan_keys", usagePlanId=plan_id):
                plan_of.setdefault(k["id"], plan_id)
        out: dict[str, _KeyEntry] = {}
        for k in self._paged("get_api_keys", includeValues=True):
            value = k.get("value")
            if not value:
                continue
            plan_id = plan_of.get(k["id"])
            throttle = (plans.get(plan_id) or {}).get("throttle") or {}
            rate = throttle.get("rateLimit")
            burst = throttle.get("burstLimit")
            out[value] = _KeyEntry(k["id"], bool(k.get("enabled")), plan_id,
                                   float(rate) if rate else None, int(burst) if burst else None)
        return out


def _honoured(entry: _KeyEntry | None) -> bool:
    return entry is not None and entry.enabled and entry.plan_id is not None


#: The mail handler's code directory in this repository (what the Pulumi program zips for Lambda).
HANDLER_DIR = Path(__file__).resolve().parents[2] / "infra" / "functions"
HANDLER_MODULE = "send_message"

_MODULES: dict[Path, list[Any]] = {}
_MODULES_LOCK = threading.Lock()


def _handler_modules(n: int, code_dir: Path = HANDLER_DIR) -> list[Any]:
    """``n`` independent copies of ``<code_dir>/send_message.py``, loaded from the code directory
    the way Lambda loads a handler (by file, not by importing the Pulumi program's package). The
    handler keeps per-request state in module globals (powertools' resolver), so each copy serves
    one request at a time: one copy per warm "Lambda instance".

    Raises ``FileNotFoundError`` naming the directory when the handler is not there (running
    outside a checkout of the repository).
    """
    code_dir = Path(code_dir).resolve()
    if not (code_dir / f"{HANDLER_MODULE}.py").is_file():
        raise FileNotFoundError(f"no {HANDLER_MODULE}.py in {code_dir}: the dev gateway runs the mail handler "
                                "from a checkout of the repository (infra/functions)")
    with _MODULES_LOCK:
        copies = _MODULES.setdefault(code_dir, [])
        while len(copies) < n:
            # each copy is its own package over code_dir, so the handler's relative imports resolve
            package = f"_mail_handler_instance_{abs(hash(code_dir))}_{len(copies)}"
            pkg_spec = importlib.util.spec_from_file_location(
                package, code_dir / "__init__.py", submodule_search_locations=[str(code_dir)])
            if pkg_spec is None or pkg_spec.loader is None:
                raise ImportError(f"{code_dir / '__init__.py'}: not loadable as a Python package")
            pkg = importlib.util.module_from_spec(pkg_spec)
            sys.modules[package] = pkg
            pkg_spec.loader.exec_module(pkg)
            name = f"{package}.{HANDLER_MODULE}"
            spec = importlib.util.spec_from_file_location(name, code_dir / f"{HANDLER_MODULE}.py")
            if spec is None or spec.loader is None:
                raise ImportError(f"{code_dir / HANDLER_MODULE}.py: not loadable as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up while it executes
            # powertools keeps one formatter per logging.Logger name: give each copy its own service
            saved = os.environ.get("POWERTOOLS_SERVICE_NAME")
            os.environ["POWERTOOLS_SERVICE_NAME"] = f"{saved or 'mail-api'}-instance-{len(copies)}"
            try:
                spec.loader.exec_module(module)
            finally:
                if saved is None:
                    os.environ.pop("POWERTOOLS_SERVICE_NAME", None)
                else:
                    os.environ["POWERTOOLS_SERVICE_NAME"] = saved
            copies.append(module)
        return copies[:n]


class _LambdaContext:
    """The attributes powertools' ``inject_lambda_context`` reads."""

    function_name = "mail-api-send-message-dev"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:mail-api-send-message-dev"

    def __init__(self, request_id: str):
        self.aws_request_id = request_id


def ensure_mail_backend(session: boto3.Session, endpoint_url: str, *, sender_identity: str,
                        configuration_set: str, table_name: str) -> None:
    """Create the SES v2 configuration set and identity and the DynamoDB audit table the handler
    needs, where missing (idempotent)."""
    sesv2 = session.client("sesv2", endpoint_url=endpoint_url)
    if configuration_set not in sesv2.list_configuration_sets().get("ConfigurationSets", []):
        try:
            sesv2.create_configuration_set(ConfigurationSetName=configuration_set,
                                           DeliveryOptions={"TlsPolicy": "REQUIRE"})
        except ClientError as exc:  # created meanwhile (moto names the code differently from AWS)
            if "AlreadyExists" not in exc.response.get("Error", {}).get("Code", ""):
                raise
    identities = {i["IdentityName"] for i in sesv2.list_email_identities().get("EmailIdentities", [])}
    if sender_identity not in identities:
        sesv2.create_email_identity(EmailIdentity=sender_identity, ConfigurationSetName=configuration_set)
    ddb = session.client("dynamodb", endpoint_url=endpoint_url)
    if table_name not in ddb.list_tables().get("TableNames", []):
        with contextlib.suppress(ddb.exceptions.ResourceInUseException):
            ddb.create_table(TableName=table_name,
                             KeySchema=[{"AttributeName": "message_id", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "message_id", "AttributeType": "S"}],
                             BillingMode="PAY_PER_REQUEST")


def find_rest_api(client: Any, name: str) -> str:
    """The id of the REST API called ``name``. Raises ``LookupError`` when there is none."""
    for api in client.get_rest_apis(limit=500).get("items", []):
        if api.get("name") == name:
            return api["id"]
    raise LookupError(f"no REST API named {name!r} at this AWS endpoint (run the dev bootstrap first)")


class DevGateway:
    """The local gateway. DEVELOPMENT AND TEST TOOL — see the module docstring.

    :param aws_endpoint: AWS endpoint holding the REST API, keys and usage plans (moto), e.g.
        ``http://127.0.0.1:5000``; also where the handler sends mail (SES v2) and records it
        (DynamoDB).
    :param rest_api_id: the REST API whose stage is served; default: the one named
        ``secure-mail-api-<stack>`` (what :func:`rotation.dev.stack.bootstrap_aws` creates).
    :param stage: the stage name (default ``v1``): usage plans must list ``(rest_api_id, stage)``.
    :param host, port: where to listen (loopback only; port 0 picks a free port).
    :param key_cache_seconds: how long the key/usage-plan snapshot is reused (default 2 s).
    :param environment: more of the handler's environment, as ``pulumi up`` would set it (e.g. the
        access levels from ``python -m infra.handler_environment``); set while the gateway runs.
    :param read_timeout_seconds: how long one read of a request may wait (default 10 s): a
        Content-Length larger than the body sent ends in 408, never a hung worker.
    :param propagation_seconds: how long a change in whether a key is honoured takes to reach
        the data plane once seen (default 0; see the module docstring).
    :param clock: monotonic seconds for the key cache and the throttle buckets (default
        ``time.monotonic``); tests pass a fake clock to step through the cache window.
    :param sender_identity, configuration_set, table_name: the handler's environment; created in
        the emulator on :meth:`start` when ``setup_backend`` (default) and missing.
    :param quiet: lower the handler's log level to ERROR (its per-request JSON lines).
    :param concurrency: warm handler instances (default 4), like Lambda's concurrent execution
        environments: each is its own copy of the handler module, used by one request at a time.

    The handler reads its configuration from ``os.environ``: :meth:`start` sets
    ``SENDER_IDENTITY``, ``CONFIGURATION_SET``, ``TABLE_NAME``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``
    (and test credentials when none are set) for this process, and :meth:`stop` restores them.
    """

    def __init__(self, aws_endpoint: str, *, rest_api_id: str | None = None, stack: str = "dev",
                 stage: str = "v1", host: str = "127.0.0.1", port: int = 0, key_cache_seconds: float = 2.0,
                 region: str = DEV_REGION, sender_identity: str = DEFAULT_SENDER_IDENTITY,
                 configuration_set: str = DEFAULT_CONFIGURATION_SET, table_name: str = DEFAULT_TABLE_NAME,
                 setup_backend: bool = True, quiet: bool = False, concurrency: int = 4,
                 session: boto3.Session | None = None, clock: Callable[[], float] = time.monotonic,
                 read_timeout_seconds: float = READ_TIMEOUT_SECONDS, environment: dict[str, str] | None = None,
                 propagation_seconds: float = 0.0):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the dev gateway listens on loopback only")
        if key_cache_seconds < 0:
            raise ValueError("key_cache_seconds must be >= 0")
        if propagation_seconds < 0:
            raise ValueError("propagation_seconds must be >= 0")
        self.propagation_seconds = propagation_seconds
        self.aws_endpoint = aws_endpoint.rstrip("/")
        self.region = region
        self.stack = stack
        self.stage = stage
        self.host = host
        self._port = port
        self.key_cache_seconds = key_cache_seconds
        self._clock = clock
        self.read_timeout_seconds = read_timeout_seconds
        self.environment = dict(environment or {})
        #: bearer token of the dev-only ``GET /_dev/usage`` (random per gateway)
        self.usage_token = secrets.token_urlsafe(24)
        self.sender_identity = sender_identity
        self.configuration_set = configuration_set
        self.table_name = table_name
        self.setup_backend = setup_backend
        self.quiet = quiet
        if not 1 <= concurrency <= 32:
            raise ValueError("concurrency must be 1..32 handler instances")
        self.concurrency = concurrency
        self._session = session or boto3.Session(
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing", region_name=region)
        self.rest_api_id = rest_api_id
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._cache: _KeyCache | None = None
        self._buckets: dict[tuple[str, float, int], NonBlockingBucket] = {}
        self._counts: dict[str, int] = {}
        self._status_counts: dict[int, int] = {}
        self._lock = threading.Lock()
        self._saved_env: dict[str, str | None] = {}
        self._instances: queue.SimpleQueue | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the dev gateway is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The mail API endpoint: ``http://127.0.0.1:PORT/v1/messages``."""
        return self.base_url + ROUTE

    @property
    def usage_url(self) -> str:
        return self.base_url + USAGE_PATH

    def start(self) -> Self:
        """Resolve the REST API, set the handler's environment, create the mail backend if
        missing, and serve in a daemon thread. Raises ``LookupError`` (no REST API) or the
        AWS client's error (endpoint unreachable)."""
        if self._server is not None:
            return self
        apigw = self._session.client("apigateway", endpoint_url=self.aws_endpoint, region_name=self.region)
        if self.rest_api_id is None:
            self.rest_api_id = find_rest_api(apigw, f"secure-mail-api-{self.stack}")
        if self.setup_backend:
            ensure_mail_backend(self._session, self.aws_endpoint, sender_identity=self.sender_identity,
                                configuration_set=self.configuration_set, table_name=self.table_name)
        self._cache = _KeyCache(apigw, self.rest_api_id, self.stage, self.key_cache_seconds, self._clock,
                                self.propagation_seconds)
        self._set_env()
        self._instances = queue.SimpleQueue()
        modules = _handler_modules(self.concurrency)
        # the API's request model, applied the way API Gateway does before the handler runs
        self._body_check = importlib.import_module(modules[0].__package__ + ".request_model").gateway_body_check
        for module in modules:
            if self.quiet:
                module.logger.setLevel(logging.ERROR)
            self._instances.put(module.handler)
        gateway: DevGateway = self

        class _Handler(_RequestHandler):
            gw = gateway
            timeout = gateway.read_timeout_seconds

        self._server = ThreadingHTTPServer((self.host, self._port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="dev-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and restore the environment variables :meth:`start` set. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def handler_environment(self) -> dict[str, str]:
        """The environment variables the handler needs (set by :meth:`start` in this process)."""
        env = {"SENDER_IDENTITY": self.sender_identity, "CONFIGURATION_SET": self.configuration_set,
               "TABLE_NAME": self.table_name, "AWS_ENDPOINT_URL": self.aws_endpoint, "AWS_REGION": self.region}
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        return {**env, **self.environment}

    def _set_env(self) -> None:
        for name, value in self.handler_environment().items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    # -- counters -------------------------------------------------------------------------------
    def request_count(self, key_id: str) -> int:
        """Requests seen with API key ``key_id`` since start (any answer but the routing error)."""
        with self._lock:
            return self._counts.get(key_id, 0)

    def usage(self) -> dict[str, int]:
        """``{key_id: requests}`` since start."""
        with self._lock:
            return dict(self._counts)

    def status_counts(self) -> dict[int, int]:
        """``{HTTP status: responses}`` since start."""
        with self._lock:
            return dict(self._status_counts)

    def invalidate_keys(self) -> None:
        """Drop the key cache: the next request re-reads keys and plans (tests)."""
        if self._cache is not None:
            self._cache.invalidate()

    # -- the request path -----------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes | Callable[[], bytes],
               source_ip: str) -> tuple[int, dict[str, str], bytes]:
        """One request through route -> key -> throttle -> body -> model -> handler. Returns
        ``(status, headers, body)``. ``body`` is the bytes or a callable that reads them: it is
        called only once the route, the key and the throttle let the request through, so an
        unauthenticated caller never gets its body read."""
        request_id = str(uuid.uuid4())
        read_body = body if callable(body) else (lambda: body)
        status, out_headers, out_body = self._handle(method, path, headers, read_body, source_ip, request_id)
        out_headers["x-amzn-RequestId"] = request_id
        with self._lock:
            self._status_counts[status] = self._status_counts.get(status, 0) + 1
        return status, out_headers, out_body

    def _gateway_response(self, spec) -> tuple[int, dict[str, str], bytes]:
        status, body, error_type = spec
        return status, {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}, \
            json.dumps(body, separators=(",", ":")).encode()

    def _handle(self, method, path, headers, read_body, source_ip, request_id):
        route = path.split("?", 1)[0]
        lower = {k.lower(): v for k, v in headers.items()}
        if method == "GET" and route == USAGE_PATH:
            # the dev-only counters: authenticated too, with the gateway's own bearer token
            supplied = lower.get("authorization", "")
            if not hmac.compare_digest(supplied.encode(), f"Bearer {self.usage_token}".encode()):
                return self._gateway_response(FORBIDDEN)
            return 200, {"Content-Type": "application/json", "Cache-Control": "no-store"}, \
                json.dumps(self.usage()).encode()
        if method != "POST" or route != ROUTE:
            return self._gateway_response(MISSING_TOKEN)
        value = lower.get("x-api-key")
        if not value:
            return self._gateway_response(FORBIDDEN)
        try:
            entry = self._cache.lookup(value)
        except Exception as exc:  # noqa: BLE001 - the control plane is unreachable and nothing cached
            log.error("dev gateway: cannot read API keys (%s)", type(exc).__name__)
            return self._gateway_response(INTERNAL)
        if entry is None:
            return self._gateway_response(FORBIDDEN)
        with self._lock:
            self._counts[entry.key_id] = self._counts.get(entry.key_id, 0) + 1
        if not entry.enabled or entry.plan_id is None:
            return self._gateway_response(FORBIDDEN)
        if entry.rate is not None and not self._bucket(entry, entry.rate).try_take():
            return self._gateway_response(THROTTLED)
        try:
            body = read_body()
        except _BodyRefused as refused_body:
            return refused_body.response
        refused = self._body_check(lower.get("content-type"), body)
        if refused is not None:
            return refused
        event = self._event(route, headers, body, source_ip, request_id, entry.key_id, value)
        handler = self._instances.get()  # a free warm "Lambda instance" (waits when all are busy)
        try:
            result = handler(event, _LambdaContext(request_id))
        except Exception as exc:  # noqa: BLE001 - API Gateway's answer to a failed integration
            log.error("dev gateway: handler raised %s", type(exc).__name__)
            return 502, {"Content-Type": "application/json", "x-amzn-ErrorType": "InternalServerErrorException"}, \
                b'{"message": "Internal server error"}'
        finally:
            self._instances.put(handler)
        out_headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            out_headers[str(name)] = ", ".join(str(v) for v in values)
        raw = result.get("body") or ""
        data = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        return int(result.get("statusCode") or 502), out_headers, data

    def _bucket(self, entry: _KeyEntry, rate: float) -> NonBlockingBucket:
        """The token bucket of ``entry``'s key at ``rate`` requests/s (its plan's throttle)."""
        k = (entry.key_id, rate, entry.burst or 1)
        with self._lock:
            bucket = self._buckets.get(k)
            if bucket is None:
                bucket = self._buckets[k] = NonBlockingBucket(rate, max(1, entry.burst or 1),
                                                                       clock=self._clock)
            return bucket

    def _event(self, route, headers, body, source_ip, request_id, key_id, key_value) -> dict[str, Any]:
        """An API Gateway REST proxy event (payload v1), as the Lambda integration receives it."""
        try:
            text, b64 = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, b64 = base64.b64encode(body).decode(), True
        now = datetime.now(UTC)
        multi: dict[str, list[str]] = {}
        for k, v in headers.items():
            multi.setdefault(k, []).append(v)
        return {
            "resource": route, "path": route, "httpMethod": "POST",
            "headers": dict(headers), "multiValueHeaders": multi,
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None,
            "requestContext": {
                "resourcePath": route, "httpMethod": "POST", "path": route, "stage": self.stage,
                "requestId": request_id, "extendedRequestId": request_id, "apiId": self.rest_api_id,
                "accountId": "000000000000", "protocol": "HTTP/1.1", "domainName": f"{self.host}:{self.port}",
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "identity": {"apiKeyId": key_id, "apiKey": key_value, "sourceIp": source_ip,
                             "userAgent": headers.get("User-Agent") or headers.get("user-agent")},
            },
            "body": text if body else None,
            "isBase64Encoded": b64,
        }


class _BodyRefused(Exception):
    """The request body was refused before the handler: ``response`` is the gateway's answer."""

    def __init__(self, status: int, message: str, error_type: str):
        super().__init__(message)
        self.response = (status, {"Content-Type": "application/json", "x-amzn-ErrorType": error_type},
                         json.dumps({"message": message}, separators=(",", ":")).encode())


class _RequestHandler(BaseHTTPRequestHandler):
    gw: DevGateway
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # headers and body in one write (flushed after each request)
    server_version = "mail-api-dev-gateway"

    timeout = READ_TIMEOUT_SECONDS   # socket timeout for every read (StreamRequestHandler)

    def _read_body(self) -> bytes:
        """The body, bounded by size (:data:`MAX_BODY_BYTES`, checked on Content-Length before
        reading) and time (:data:`READ_TIMEOUT_SECONDS` per read). Raises :class:`_BodyRefused`."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            raise _BodyRefused(400, "Invalid Content-Length", "BadRequestException")
        length = int(raw)
        if length > MAX_BODY_BYTES:
            raise _BodyRefused(413, "Request Too Long", "RequestTooLargeException")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            body = b""
        if len(body) != length:
            self.close_connection = True
            raise _BodyRefused(408, "Request Timeout", "RequestTimeoutException")
        return body

    def _serve(self) -> None:
        headers = {k: v for k, v in self.headers.items()}
        status, out_headers, out_body = self.gw.handle(self.command, self.path, headers, self._read_body,
                                                       self.client_address[0])
        if status >= 400 and "Content-Length" in self.headers and not self.close_connection:
            self.close_connection = True   # an unread body must not be parsed as the next request
        self.send_response(status)
        for k, v in out_headers.items():
            if k.lower() not in ("content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(out_body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out_body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def do_HEAD(self) -> None:
        self.send_response(403)
        self.send_header("x-amzn-ErrorType", MISSING_TOKEN[2])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt: str, *args) -> None:  # never log headers (the key) or bodies
        log.debug("dev gateway: %s", fmt % args)


class DevGatewayTraffic:
    """A :class:`rotation.backends.traffic.TrafficSignal` reading the dev gateway's per-key counters.

    ``DevGatewayTraffic(gateway)`` reads them in process; ``DevGatewayTraffic("http://127.0.0.1:PORT",
    token=gateway.usage_token)`` reads ``GET /_dev/usage`` through
    :class:`~rotation.backends.traffic.UsageEndpointTraffic`.
    Returns the number of requests the gateway saw with the key since it started (0 for a key it
    never saw), or ``None`` when the gateway cannot be reached.
    """

    def __init__(self, source: DevGateway | str, *, token: str | None = None, timeout_seconds: float = 2.0):
        self.source = source
        self._local = source if isinstance(source, DevGateway) else None
        self._remote = None if isinstance(source, DevGateway) else UsageEndpointTraffic(
            source.rstrip("/") + USAGE_PATH, token=token, timeout_seconds=timeout_seconds)

    def request_count(self, key_id: str, usage_plan_id: str) -> int | None:
        if self._local is not None:
            return self._local.request_count(key_id)
        if self._remote is not None:
            return self._remote.request_count(key_id, usage_plan_id)
        return None   # unreachable: built with one of the two


# -- command line ----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rotation.dev gateway",
        description="DEVELOPMENT AND TEST TOOL (not API Gateway): serve the mail API handler on loopback "
                    "behind API-key checks and usage-plan throttling read from the AWS emulator.")
    p.add_argument("--aws-endpoint", default=os.environ.get("AWS_ENDPOINT_URL"),
                   help="attach to this AWS endpoint (default: $AWS_ENDPOINT_URL); without it, start the "
                        "embedded stack (OpenBao + moto) and bootstrap it")
    p.add_argument("--consumers-file", default=None,
                   help="consumers file to bootstrap the embedded stack with, its push targets dropped (default: "
                        "the dev stack's own, local targets only, written next to --env-file)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("MAIL_API_DEV_PORT") or 8080),
                   help="listen port (default 8080 or $MAIL_API_DEV_PORT; 0 = any free port)")
    p.add_argument("--stage", default="v1")
    p.add_argument("--stack", default=os.environ.get("ROTATION_STACK") or "dev",
                   help="REST API secure-mail-api-<stack> (default $ROTATION_STACK or dev)")
    p.add_argument("--rest-api-id", default=None)
    p.add_argument("--key-cache-seconds", type=float, default=2.0)
    p.add_argument("--propagation-seconds", type=float, default=0.0,
                   help="delay before a new key is honoured or a disabled key refused, once seen")
    p.add_argument("--env-file", default=str(DEV_DIR / "env"),
                   help="with the embedded stack: write the rotation environment here (mode 0600)")
    p.add_argument("--quiet", action="store_true", help="only the handler's errors on stdout")
    return p


def _start_embedded(args: argparse.Namespace, exits: contextlib.ExitStack
                    ) -> tuple[EmbeddedStack, DevCredentials, Path]:
    """Start and bootstrap the embedded stack with the dev stack's own consumers file (local
    targets only, :func:`rotation.dev.workspace.write_dev_consumers`), or with a pull-only copy of
    ``--consumers-file`` (push targets dropped: the apps read their key from Vault).
    Returns (stack, creds, consumers path)."""
    from pathlib import Path

    import yaml

    from rotation.config import load_consumers_file
    from rotation.dev.stack import EmbeddedStack

    out_dir = Path(args.env_file).parent
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if args.consumers_file:
        raw = yaml.safe_load(Path(args.consumers_file).read_text())
        for c in raw.get("consumers") or []:
            c.pop("targets", None)
        dev_consumers = out_dir / "consumers.yaml"
        dev_consumers.write_text(yaml.safe_dump(raw, sort_keys=False))
    else:
        dev_consumers = write_dev_consumers(out_dir)
    consumers = load_consumers_file(dev_consumers)
    stack = exits.enter_context(EmbeddedStack())
    creds = stack.bootstrap(consumers, stack=args.stack)
    return stack, creds, dev_consumers.resolve()


def _write_env_files(args: argparse.Namespace, stack: EmbeddedStack, creds: DevCredentials, consumers_path: Path,
                     gw: DevGateway) -> None:
    """``<env-file>``: the rotator's environment (+ ``ROTATION_CONSUMERS_FILE``,
    ``ROTATION_CANARY_URL``, and the gateway's per-key counters as the traffic signal:
    ``ROTATION_TRAFFIC_URL`` + ``ROTATION_TRAFFIC_TOKEN``); ``<dir>/<consumer>.env``: each app's (AppRole, ``MAIL_API_URL``);
    ``<dir>/<consumer>.agent.hcl`` with ``.role_id`` / ``.secret_id``: a Vault Agent for a non-Python app
    (:func:`rotation.dev.workspace.agent_config`). Mode 0600: they hold AppRole secret ids of the local stack."""
    from pathlib import Path

    from rotation.targets.file import write_private_file

    env_file = Path(args.env_file)
    env = {**stack.env(creds, stack=args.stack), "ROTATION_CONSUMERS_FILE": str(consumers_path),
           "ROTATION_FILE_TARGET_DIRS": str((env_file.parent / "keys").absolute()),
           "ROTATION_AUDIT_LOG": str((env_file.parent / "audit.jsonl").absolute()),
           "ROTATION_CANARY_URL": gw.url, "ROTATION_TRAFFIC_URL": gw.usage_url,
           "ROTATION_TRAFFIC_TOKEN": gw.usage_token}
    write_private_file(env_file, "".join(f"export {k}={v}\n" for k, v in env.items()))
    print(f"embedded stack: OpenBao {stack.vault_addr}, AWS emulator {stack.aws_endpoint}; rotator environment "
          f"in {env_file} (mode 0600; audit trail to {env['ROTATION_AUDIT_LOG']}), consumers file {consumers_path}",
          flush=True)
    for name, (role_id, secret_id) in creds.consumer_roles.items():
        app_env = env_file.parent / f"{name}.env"
        write_private_file(app_env, f"export VAULT_ADDR={stack.vault_addr}\nexport VAULT_AUTH_METHOD=approle\n"
                                    f"export VAULT_ROLE_ID={role_id}\nexport VAULT_SECRET_ID={secret_id}\n"
                                    f"export MAIL_API_CONSUMER={name}\nexport MAIL_API_URL={gw.url}\n")
        directory = env_file.parent
        write_private_file(directory / f"{name}.role_id", role_id)
        write_private_file(directory / f"{name}.secret_id", secret_id)
        write_private_file(directory / f"{name}.agent.hcl", agent_config(stack.vault_addr, name, directory))
        print(f"  consumer {name}: app environment in {app_env}, Vault Agent config in "
              f"{directory / f'{name}.agent.hcl'} (mode 0600)", flush=True)
    rot = rotation_command()
    print("\n".join([
        "next, in another shell (Ctrl-C here stops everything):",
        f"  cd {shlex.quote(str(REPO))}",
        f"  (. {shell_path(env_file)} && {rot} run)                 # first keys; the test step calls this gateway",
        (f"  (. {shell_path(env_file.parent / 'billing.env')} && {shell_path(Path(sys.executable))} "
         "examples/sample_app/app.py --iterations 3)   # a Python app sends mail (202)"),
        (f"  {shell_path(Path(sys.executable).parent / 'bao')} agent "
         f"-config={shell_path(env_file.parent / 'newsletter.agent.hcl')} &   # a non-Python app's key, rendered to "
         f"{shell_path(env_file.parent / 'newsletter.key.json')}"),
    ]), flush=True)


def serve_main(argv: list[str] | None = None) -> int:
    """``python -m rotation.dev gateway`` / ``make dev``: serve until SIGINT/SIGTERM. Returns an exit code
    (0 stopped cleanly, 2 bad arguments or nothing to attach to)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    with contextlib.ExitStack() as exits:
        endpoint = args.aws_endpoint
        embedded = None
        if not endpoint:
            embedded = _start_embedded(args, exits)
            endpoint = embedded[0].aws_endpoint
        try:
            gw = exits.enter_context(DevGateway(
                endpoint, rest_api_id=args.rest_api_id, stack=args.stack, stage=args.stage, host=args.host,
                port=args.port, key_cache_seconds=args.key_cache_seconds, quiet=args.quiet,
                propagation_seconds=args.propagation_seconds))
        except (LookupError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if embedded is not None:
            _write_env_files(args, *embedded, gw)
        print(f"DEVELOPMENT AND TEST TOOL (not API Gateway): mail API on {gw.url} "
              f"(REST API {gw.rest_api_id}, stage {gw.stage}, key cache {gw.key_cache_seconds:g}s); "
              f"per-key counters at {gw.usage_url}. Ctrl-C stops.", flush=True)
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve_main())
