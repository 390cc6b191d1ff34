"""The dev gateway against the real embedded stack: routing, API-key checks, usage-plan throttle,
the key cache, the real handler behind it, per-key counters, and its command line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from rotation.dev.gateway import USAGE_PATH, DevGateway, DevGatewayTraffic, NonBlockingBucket

from .conftest import CACHE_SECONDS

ROOT = Path(__file__).resolve().parents[3]
MESSAGE = {"from": "alerts@example.com", "to": ["alice@example.org"], "subject": "hello", "text": "hi"}


def post(gateway, value: str | None, body=MESSAGE, *, path="/v1/messages", header="x-api-key", method="POST"):
    headers = {header: value} if value is not None else {}
    return requests.request(method, gateway.base_url + path, json=body, headers=headers, timeout=60)


def wait_cache():
    time.sleep(CACHE_SECONDS + 0.1)


def test_accepted_key_reaches_the_real_handler_which_sends_and_records(gateway, keys):
    key_id, value = keys.make("premium")
    wait_cache()
    before = keys.sent_count()
    r = post(gateway, value)
    assert r.status_code == 202, r.text
    assert r.json()["message_id"]
    assert r.headers["x-amzn-RequestId"]
    assert r.headers["Cache-Control"] == "no-store"   # the handler's own headers come through
    assert keys.sent_count() == before + 1
    ddb = gateway._session.client("dynamodb", endpoint_url=gateway.aws_endpoint)
    items = ddb.scan(TableName=gateway.table_name)["Items"]
    mine = [i for i in items if i["message_id"]["S"] == r.json()["message_id"]]
    assert mine and mine[0]["api_key_id"]["S"] == key_id   # requestContext.identity.apiKeyId
    assert mine[0]["request_id"]["S"] == r.headers["x-amzn-RequestId"]


def test_header_name_is_case_insensitive_and_the_model_refuses_before_the_handler(gateway, keys):
    from rotation.verifiers.canary import CANARY_BODY

    _, value = keys.make("standard")
    wait_cache()
    r = post(gateway, value, body={}, header="X-API-Key")         # fails the API's request model
    assert r.status_code == 400
    assert r.json()["error"]["reason"] == "invalid_request_body"
    assert r.headers["x-amzn-ErrorType"] == "BadRequestException"
    r = requests.post(gateway.url, data=CANARY_BODY, timeout=60,  # fits the model; the handler refuses it
                      headers={"X-API-Key": value, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["reason"]
    assert r.json()["error"]["reason"] != "invalid_request_body"
    assert "x-amzn-ErrorType" not in r.headers


@pytest.mark.parametrize("case", ["missing", "unknown", "disabled", "no_plan", "other_stage"])
def test_refused_keys_get_api_gateways_forbidden(gateway, keys, case):
    value = None
    if case == "unknown":
        value = "Z" * 40
    elif case == "disabled":
        _, value = keys.make("premium", enabled=False)
    elif case == "no_plan":
        _, value = keys.make(None)
    elif case == "other_stage":
        api = keys.client()
        plan = api.create_usage_plan(name=f"other-{time.time_ns()}",
                                     apiStages=[{"apiId": gateway.rest_api_id, "stage": "other"}])["id"]
        _, value = keys.make(plan)
    wait_cache()
    before = keys.sent_count()
    r = post(gateway, value)
    assert r.status_code == 403
    assert r.text == '{"message":"Forbidden"}'
    assert r.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert keys.sent_count() == before


def test_a_key_disabled_later_is_refused_once_the_cache_expires(gateway, keys):
    key_id, value = keys.make("premium")
    wait_cache()
    assert post(gateway, value, body={}).status_code == 400
    keys.client().update_api_key(apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled",
                                                                   "value": "false"}])
    wait_cache()
    assert post(gateway, value, body={}).status_code == 403


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_key_is_refused_until_the_cache_expires(stack, keys, monkeypatch):
    """The propagation window the canary has to wait out (here 1.5 s of gateway clock): a key made
    after the cache loaded is refused until the snapshot is 1.5 s old, then accepted."""
    clock = FakeClock()
    with DevGateway(stack.aws_endpoint, key_cache_seconds=1.5, quiet=True, clock=clock) as gw:
        for k, v in gw.handler_environment().items():
            monkeypatch.setenv(k, v)
        post(gw, "Y" * 40)                     # loads the cache at clock.now
        _, value = keys.make("premium")
        assert post(gw, value, body={}).status_code == 403
        clock.now += 1.49
        assert post(gw, value, body={}).status_code == 403      # same snapshot, however long it took
        clock.now += 0.01
        assert post(gw, value, body={}).status_code == 400      # reloaded: known key, bad body


@pytest.mark.parametrize("method,path", [("POST", "/v1/other"), ("GET", "/v1/messages"),
                                         ("POST", "/v1/v1/messages"), ("POST", "/"), ("DELETE", "/v1/messages")])
def test_unknown_routes_get_the_routing_error_even_with_a_good_key(gateway, keys, method, path):
    _, value = keys.make("premium")
    wait_cache()
    r = post(gateway, value, path=path, method=method)
    assert r.status_code == 403
    assert r.json() == {"message": "Missing Authentication Token"}
    assert r.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_usage_plan_throttle_answers_429(gateway, keys):
    api = keys.client()
    plan = api.create_usage_plan(name=f"slow-{time.time_ns()}", throttle={"rateLimit": 1.0, "burstLimit": 2},
                                 apiStages=[{"apiId": gateway.rest_api_id, "stage": gateway.stage}])["id"]
    _, value = keys.make(plan)
    wait_cache()
    answers = [post(gateway, value, body={}) for _ in range(4)]
    assert [a.status_code for a in answers[:2]] == [400, 400]       # the burst
    throttled = [a for a in answers[2:] if a.status_code == 429]
    assert throttled, [a.status_code for a in answers]
    assert throttled[0].json() == {"message": "Too Many Requests"}
    assert throttled[0].headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    time.sleep(1.1)                                                   # 1 request/s refills
    assert post(gateway, value, body={}).status_code == 400


def test_non_blocking_bucket_never_waits():
    now = [0.0]
    b = NonBlockingBucket(2.0, 3, clock=lambda: now[0])
    assert [b.try_take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert b.try_take() and not b.try_take()
    with pytest.raises(ValueError):
        NonBlockingBucket(0, 1)


def test_per_key_counters_in_process_over_http_and_as_traffic_signal(gateway, keys):
    key_id, value = keys.make("premium")
    wait_cache()
    for _ in range(3):
        post(gateway, value, body={})
    assert gateway.request_count(key_id) == 3
    auth = {"Authorization": f"Bearer {gateway.usage_token}"}
    assert requests.get(gateway.base_url + USAGE_PATH, headers=auth, timeout=60).json()[key_id] == 3
    assert DevGatewayTraffic(gateway).request_count(key_id, "plan") == 3
    remote = DevGatewayTraffic(gateway.base_url, token=gateway.usage_token)
    assert remote.request_count(key_id, "plan") == 3
    assert remote.request_count("never-used", "plan") == 0
    assert DevGatewayTraffic(gateway.base_url).request_count(key_id, "plan") is None   # no token: refused
    assert DevGatewayTraffic("http://127.0.0.1:9", timeout_seconds=0.5).request_count(key_id, "p") is None


def test_concurrent_requests_are_all_answered(gateway, keys):
    from concurrent.futures import ThreadPoolExecutor

    _, value = keys.make("premium")
    wait_cache()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: post(gateway, value).status_code, range(40)))
    assert codes == [202] * 40


def test_labelled_as_a_dev_tool_and_kept_out_of_the_lambda_package():
    import rotation.dev.gateway as mod
    from infra.components.sender import FUNCTIONS_DIR

    assert mod.__doc__.startswith("DEVELOPMENT AND TEST TOOL — not API Gateway, not for production")
    packaged = {p.name for p in Path(FUNCTIONS_DIR).rglob("*.py")}
    assert "dev_gateway.py" not in packaged and "canary.py" not in packaged
    assert not any("dev_gateway" in p.read_text() for p in Path(FUNCTIONS_DIR).rglob("*.py"))


def test_refuses_non_loopback_and_missing_rest_api(stack):
    with pytest.raises(ValueError):
        DevGateway(stack.aws_endpoint, host="0.0.0.0")
    with pytest.raises(LookupError):
        DevGateway(stack.aws_endpoint, stack="nosuchstack", setup_backend=False).start()


def test_serve_main_attaches_to_an_endpoint_and_stops_on_sigterm(stack, keys, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULT_"))}
    env.update(PYTHONPATH=str(ROOT), AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    proc = subprocess.Popen([sys.executable, "-m", "rotation.dev.gateway", "--aws-endpoint", stack.aws_endpoint, "--port", "0",
                             "--quiet", "--key-cache-seconds", "0.2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert "DEVELOPMENT AND TEST TOOL" in line, line + proc.stderr.read()
        url = re.search(r"(http://127\.0\.0\.1:\d+/v1/messages)", line).group(1)
        _, value = keys.make("premium")
        time.sleep(0.3)
        r = requests.post(url, json={}, headers={"x-api-key": value}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["reason"] == "invalid_request_body"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert value not in proc.stdout.read() + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_main_exit_2_without_a_rest_api(stack, monkeypatch, capsys):
    from rotation.dev.gateway import serve_main

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert serve_main(["--aws-endpoint", stack.aws_endpoint, "--stack", "nosuch", "--port", "0"]) == 2
    assert "no REST API named" in capsys.readouterr().err


def _source(path: Path) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines() if line)


def test_serve_main_embedded_stack_for_make_dev(tmp_path):
    """``make dev``: own embedded stack + gateway; the env files it writes are enough to rotate
    (with the canary on the gateway) and to run the sample app against it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULT_", "ROTATION_"))}
    base["PYTHONPATH"] = str(ROOT)
    env_file = tmp_path / ".dev-stack" / "env"
    proc = subprocess.Popen([sys.executable, "-m", "rotation.dev.gateway", "--port", "0", "--quiet",
                             "--env-file", str(env_file)], env=base, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        lines = []
        while not lines or "DEVELOPMENT AND TEST TOOL" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        url = re.search(r"(http://127\.0\.0\.1:\d+/v1/messages)", lines[-1]).group(1)
        rot_env = _source(env_file)
        assert rot_env["ROTATION_CANARY_URL"] == url
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        dev_dir = env_file.parent.resolve()   # self-contained: local file targets under the dev directory only
        targets = [t for c in yaml.safe_load(Path(rot_env["ROTATION_CONSUMERS_FILE"]).read_text())["consumers"]
                   for t in c.get("targets", [])]
        assert {t["type"] for t in targets} == {"file"} and all(Path(t["path"]).is_relative_to(dev_dir) for t in targets)
        assert rot_env["ROTATION_FILE_TARGET_DIRS"] == str(dev_dir / "keys")
        assert requests.post(url, json={}, timeout=60).headers["x-amzn-ErrorType"] == "ForbiddenException"
        r = subprocess.run([sys.executable, "-m", "rotation.cli", "run"],
                           check=False, env={**base, **rot_env}, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "billing: bootstrap ok serial=1" in r.stdout
        app_env = _source(env_file.parent / "billing.env")
        assert app_env["MAIL_API_URL"] == url
        a = subprocess.run([sys.executable, str(ROOT / "examples" / "sample_app" / "app.py"), "--iterations", "3",
                            "--interval-ms", "50"], check=False, env={**base, **app_env}, capture_output=True, text=True,
                           timeout=60)
        assert a.returncode == 0, a.stderr
        assert a.stdout.count("serial=1") == 3 and a.stdout.count("-> HTTP 202") == 3, a.stdout

        # the next steps it printed run as pasted: a rotation, a Python app, a Vault Agent for a non-Python app
        block = lines[next(i for i, x in enumerate(lines) if x.startswith("next, in another shell")) + 1:]
        commands = [x.split("#")[0].strip() for x in block if x.startswith("  ")]
        agent_cmd = next(c for c in commands if " agent -config=" in c).rstrip("&").strip()
        r = subprocess.run(["bash", "-c", "set -eu\n" + "\n".join(c for c in commands if c != agent_cmd + " &")],
                           env=base, capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "-> HTTP 202" in r.stdout and "3 consumers, 0 failed" in r.stdout
        rendered = dev_dir / "newsletter.key.json"
        agent = subprocess.Popen(["bash", "-c", f"cd {ROOT} && exec {agent_cmd}"], env=base,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 90          # generous: the agent logs in, then renders
            while time.monotonic() < deadline and not (rendered.exists() and rendered.read_text().strip()):
                assert agent.poll() is None, agent.stderr.read()
                time.sleep(0.2)
            doc = json.loads(rendered.read_text())
            assert doc["serial"] == 1 and len(doc["api_key"]) == 40
            assert oct(rendered.stat().st_mode & 0o777) == "0o600"
        finally:
            agent.terminate()
            agent.wait(timeout=20)
        vault_addr = rot_env["VAULT_ADDR"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        with pytest.raises(requests.RequestException):   # the embedded stack is stopped too
            requests.get(vault_addr + "/v1/sys/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- every route authenticated, the key checked before the body is read, reads bounded ------------
def raw_request(gateway, head: bytes, body: bytes = b"", *, deadline: float = 60) -> bytes:
    """Send ``head`` + ``body`` on a raw socket; return everything the gateway answers before it
    closes the connection (or ``deadline`` seconds pass: a generous bound, not a speed claim)."""
    import socket

    with socket.create_connection((gateway.host, gateway.port), timeout=deadline) as sock:
        sock.sendall(head + body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in b"".join(chunks):
                break
    return b"".join(chunks)


def test_the_usage_counters_need_the_gateways_token(gateway):
    assert requests.get(gateway.base_url + USAGE_PATH, timeout=60).status_code == 403
    wrong = {"Authorization": "Bearer " + "x" * 32}
    assert requests.get(gateway.base_url + USAGE_PATH, headers=wrong, timeout=60).status_code == 403


@pytest.mark.parametrize("key", [None, "Z" * 40])
def test_a_request_without_a_valid_key_is_answered_without_reading_its_body(gateway, key):
    """A Content-Length of 1 MB and no body: answered 403 at once, the unread body never awaited."""
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + (f"x-api-key: {key}\r\n".encode() if key else b"") + b"Content-Length: 1000000\r\n\r\n")
    answer = raw_request(gateway, head)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


def test_a_body_larger_than_api_gateways_limit_is_refused_with_413_unread(gateway, keys):
    from rotation.dev.gateway import MAX_BODY_BYTES

    _, value = keys.make("premium")
    wait_cache()
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"x-api-key: {value}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
    answer = raw_request(gateway, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_content_length_larger_than_the_body_ends_in_408_not_a_hung_worker(stack, keys, monkeypatch):
    with DevGateway(stack.aws_endpoint, key_cache_seconds=0, quiet=True, read_timeout_seconds=0.5) as gw:
        for k, v in gw.handler_environment().items():
            monkeypatch.setenv(k, v)
        _, value = keys.make("premium")
        head = (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"x-api-key: {value}\r\nContent-Length: 500\r\n\r\n".encode())
        answer = raw_request(gw, head, b'{"from": ')
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert post(gw, value, body={}).status_code == 400      # the gateway still serves


def test_propagation_delays_a_new_key_and_a_disabled_key_by_the_configured_seconds(stack, keys, monkeypatch):
    """``propagation_seconds=30``: once a snapshot shows a change, the key keeps its old answer
    for 30 s of gateway clock: a new key stays refused, a disabled key stays accepted."""
    clock = FakeClock()
    with DevGateway(stack.aws_endpoint, key_cache_seconds=0, quiet=True, clock=clock,
                    propagation_seconds=30) as gw:
        for k, v in gw.handler_environment().items():
            monkeypatch.setenv(k, v)
        old_id, old_value = keys.make("premium")
        post(gw, "Y" * 40)                     # the first snapshot: keys in it are in force at once
        assert post(gw, old_value, body={}).status_code == 400
        _, new_value = keys.make("premium")
        assert post(gw, new_value, body={}).status_code == 403     # seen now, honoured in 30 s
        keys.client().update_api_key(apiKey=old_id, patchOperations=[
            {"op": "replace", "path": "/enabled", "value": "false"}])
        clock.now += 29.9
        assert post(gw, new_value, body={}).status_code == 403
        assert post(gw, old_value, body={}).status_code == 400     # disabled at 0 s of clock... still served
        clock.now += 0.2
        assert post(gw, new_value, body={}).status_code == 400     # 30 s after it was seen
        assert post(gw, old_value, body={}).status_code == 400     # its own 30 s started later
        clock.now += 30
        assert post(gw, old_value, body={}).status_code == 403


def test_propagation_seconds_must_not_be_negative(stack):
    with pytest.raises(ValueError, match="propagation_seconds"):
        DevGateway(stack.aws_endpoint, propagation_seconds=-1)
