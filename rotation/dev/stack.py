"""The embedded stack: an OpenBao dev server and a moto server on free loopback ports, set up the
way production is (the definition of :mod:`rotation.vault_setup`: KV v2 with ``cas_required``, the
ACL policies, one AppRole per consumer and one for the rotator; a REST API, a stage and usage plans by tier).

For the demo, the tests and local exploration only. Every process it starts is stopped by
:meth:`EmbeddedStack.stop` (also at interpreter exit), in its own process group, so nothing is
left behind. Emulator facts: ``docs/testing.md`` ("What the emulators do not do").
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import boto3
import hvac
import requests

from rotation.config import ConsumersFile
from rotation.vault_policies import consumer_policy_name
from rotation.vault_setup import ROTATOR_ROLE, VaultSetup, apply_setup

__all__ = ["DevCredentials", "EmbeddedStack", "bootstrap_aws", "bootstrap_vault", "dev_setup", "free_port"]

DEV_REGION = "us-east-1"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name!r} not found: run `make install` (it comes from the dev extras)")
    return found


def _wait_http(url: str, deadline_s: float, proc: subprocess.Popen, ok=(200, 429, 472, 473, 501, 503)) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}: {url}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code in ok:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer within {deadline_s}s: {url}")


@dataclass
class DevCredentials:
    """What the bootstrap hands out. Secret ids are for the local stack only."""

    rotator_role_id: str
    rotator_secret_id: str = field(repr=False)
    consumer_roles: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)  # name -> (role_id, secret_id)
    usage_plan_ids: dict[str, str] = field(default_factory=dict)
    rest_api_id: str = ""
    stage: str = "v1"


def dev_setup(mount: str = "secret", prefix: str = "mail-api", *, rotator_token_ttl: str = "1h",
              consumer_token_ttl: str = "1h") -> VaultSetup:
    """The dev stack's Vault definition: production's (:mod:`rotation.vault_setup`) with AppRole
    logins for the rotator, every consumer and the auditor, secret ids that do not expire, tokens
    up to 24 h; with the defaults it equals ``examples/vault-setup.yaml`` (a test keeps them equal).
    The audit device is declared in the dev server's configuration (:meth:`EmbeddedStack.start`)."""
    approle = {"secret_id_ttl": 0, "token_max_ttl": "24h"}
    return VaultSetup.model_validate({
        "mount": mount, "prefix": prefix, "max_versions": 10,
        "rotator": {"approle": {**approle, "token_ttl": rotator_token_ttl}},
        "apps": {"approle": {**approle, "token_ttl": consumer_token_ttl}},
        "auditor": {"approle": {**approle, "token_ttl": "1h"}},
    })


def bootstrap_vault(client: hvac.Client, consumers: ConsumersFile, mount: str = "secret",
                    prefix: str = "mail-api", *, rotator_token_ttl: str = "1h",
                    consumer_token_ttl: str = "1h") -> DevCredentials:
    """Configure a fresh OpenBao like production by applying the same definition
    (:func:`rotation.vault_setup.apply_setup` with :func:`dev_setup`): KV v2 with ``cas_required``,
    the ACL policies, AppRoles for the rotator and each consumer; then issue their secret ids and
    each webhook consumer's signing secret.

    ``client`` must hold a token allowed to do all that (the dev root token). Idempotent.
    """
    apply_setup(client, dev_setup(mount, prefix, rotator_token_ttl=rotator_token_ttl,
                                  consumer_token_ttl=consumer_token_ttl), consumers)

    def role(name: str) -> tuple[str, str]:
        role_id = client.auth.approle.read_role_id(name)["data"]["role_id"]
        secret_id = client.auth.approle.generate_secret_id(name)["data"]["secret_id"]
        return role_id, secret_id

    rid, sid = role(ROTATOR_ROLE)
    creds = DevCredentials(rotator_role_id=rid, rotator_secret_id=sid)
    for c in consumers.consumers:
        creds.consumer_roles[c.name] = role(consumer_policy_name(c.name))
        if any(t.type == "webhook" for t in c.targets):
            path = f"{prefix}/webhooks/{c.name}"
            with contextlib.suppress(hvac.exceptions.InvalidRequest):  # exists already (cas=0)
                client.secrets.kv.v2.create_or_update_secret(
                    path=path, secret={"signing_secret": secrets.token_urlsafe(32)}, cas=0, mount_point=mount)
    return creds


def bootstrap_aws(session: boto3.Session, endpoint_url: str, consumers: ConsumersFile, stack: str = "dev",
                  creds: DevCredentials | None = None) -> DevCredentials:
    """Create what the Pulumi program would: a REST API with ``POST /v1/messages`` requiring an
    API key, a deployment, stage ``v1``, and one usage plan per tier named as the consumers file
    says, tagged ``secure-mail-api:stack=<stack>``. Idempotent by name."""
    creds = creds or DevCredentials(rotator_role_id="", rotator_secret_id="")
    apigw = session.client("apigateway", endpoint_url=endpoint_url)
    name = f"secure-mail-api-{stack}"
    existing = [a for a in apigw.get_rest_apis(limit=500)["items"] if a["name"] == name]
    if existing:
        api_id = existing[0]["id"]
    else:
        api_id = apigw.create_rest_api(name=name, apiKeySource="HEADER",
                                       endpointConfiguration={"types": ["REGIONAL"]},
                                       tags={"secure-mail-api:stack": stack})["id"]
        root = next(r["id"] for r in apigw.get_resources(restApiId=api_id)["items"] if r["path"] == "/")
        v1 = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="v1")["id"]
        msgs = apigw.create_resource(restApiId=api_id, parentId=v1, pathPart="messages")["id"]
        apigw.put_method(restApiId=api_id, resourceId=msgs, httpMethod="POST", authorizationType="NONE",
                         apiKeyRequired=True)
        apigw.put_integration(restApiId=api_id, resourceId=msgs, httpMethod="POST", type="MOCK",
                              requestTemplates={"application/json": '{"statusCode": 200}'})
        dep = apigw.create_deployment(restApiId=api_id, description="dev bootstrap")["id"]
        apigw.create_stage(restApiId=api_id, stageName=creds.stage, deploymentId=dep)
    creds.rest_api_id = api_id
    plans = {p["name"]: p["id"] for p in apigw.get_usage_plans(limit=500)["items"]}
    for tier, plan_name in consumers.usage_plans.items():
        if plan_name not in plans:
            rate, burst, quota = (50.0, 100, 100_000) if "premium" in tier else (10.0, 20, 10_000)
            plans[plan_name] = apigw.create_usage_plan(
                name=plan_name, apiStages=[{"apiId": api_id, "stage": creds.stage}],
                throttle={"rateLimit": rate, "burstLimit": burst},
                quota={"limit": quota, "period": "DAY"},
                tags={"secure-mail-api:stack": stack, "secure-mail-api:tier": tier},
            )["id"]
        creds.usage_plan_ids[tier] = plans[plan_name]
    return creds


class EmbeddedStack:
    """Start OpenBao (dev mode, file audit device) and moto on free loopback ports.

    The root token never appears on a command line: OpenBao reads it from its environment
    (``BAO_DEV_ROOT_TOKEN_ID``); the work directory is mode 0700 and the server logs 0600.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. ``env()`` returns the
    environment a rotation process needs (AppRole credentials for the rotator, not the root token).
    """

    def __init__(self, workdir: str | Path | None = None, *, keep_workdir: bool = False):
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mail-api-dev-"))
        self.keep_workdir = keep_workdir
        self.root_token = "dev-root-" + secrets.token_hex(12)
        self.vault_port = free_port()
        self.aws_port = free_port()
        self.vault_addr = f"http://127.0.0.1:{self.vault_port}"
        self.aws_endpoint = f"http://127.0.0.1:{self.aws_port}"
        self.audit_log = self.workdir / "vault-audit.log"
        self._procs: list[subprocess.Popen] = []
        self.vault_process: subprocess.Popen | None = None
        self._logs: list = []

    # -- processes ------------------------------------------------------------------------------
    def _spawn(self, args: list[str], logname: str, env: dict[str, str]) -> subprocess.Popen:
        # owner-only: OpenBao's dev mode prints its root token in its log
        fd = os.open(self.workdir / logname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        logf = open(fd, "wb")  # noqa: SIM115 - the server's log while it runs; closed in stop()
        self._logs.append(logf)
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=self.workdir)
        self._procs.append(proc)
        return proc

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)      # server logs (the dev root token) and the audit log: owner only
        atexit.register(self.stop)
        (self.workdir / "audit.hcl").write_text(
            f'audit "file" "main" {{\n  options {{ file_path = "{self.audit_log}" }}\n}}\n')
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        base_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LANG": "C.UTF-8"}
        # The root token goes in the server's environment (BAO_DEV_ROOT_TOKEN_ID, which `bao server
        # -dev` reads; /proc/<pid>/environ is readable by the owner only), never on its command line,
        # which every local user sees in the process list; -dev-no-store-token: no ~/.vault-token.
        bao = self._spawn([_bin("bao"), "server", "-dev", "-dev-no-store-token",
                           f"-dev-listen-address=127.0.0.1:{self.vault_port}",
                           f"-config={self.workdir / 'audit.hcl'}"], "openbao.log",
                          {**base_env, "BAO_DEV_ROOT_TOKEN_ID": self.root_token})
        self.vault_process = bao
        moto = self._spawn([_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.aws_port)], "moto.log",
                           {**base_env, "MOTO_ALLOW_NONEXISTENT_REGION": "false"})
        try:
            _wait_http(f"{self.vault_addr}/v1/sys/health", 30, bao)
            _wait_http(f"{self.aws_endpoint}/moto-api/", 30, moto)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process this stack started (SIGTERM, then SIGKILL after 5 s)."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._procs.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()
        if self._own_dir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Return both servers to their just-started state without restarting them, so many tests
        can share one stack: moto's ``POST /moto-api/reset`` clears every AWS resource; in OpenBao
        every secrets engine, auth method and ACL policy added since start (by a bootstrap or a
        test) is removed, which also revokes the tokens those auth methods issued. The root token,
        the built-in mounts and the audit device stay. Raises the client's error if a server
        does not answer."""
        requests.post(f"{self.aws_endpoint}/moto-api/reset", timeout=30).raise_for_status()
        c = self.root_client()
        for path in c.sys.list_mounted_secrets_engines()["data"]:
            if path.endswith("/") and path not in ("sys/", "cubbyhole/", "identity/"):
                c.sys.disable_secrets_engine(path.rstrip("/"))
        for path in c.sys.list_auth_methods()["data"]:
            if path.endswith("/") and path != "token/":
                c.sys.disable_auth_method(path.rstrip("/"))
        for name in c.sys.list_policies()["data"]["policies"]:
            if name not in ("root", "default"):
                c.sys.delete_policy(name)

    # -- clients and set-up ---------------------------------------------------------------------
    def root_client(self) -> hvac.Client:
        return hvac.Client(url=self.vault_addr, token=self.root_token, timeout=10)

    def aws_session(self) -> boto3.Session:
        return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                             region_name=DEV_REGION)

    def bootstrap(self, consumers: ConsumersFile, *, stack: str = "dev", mount: str = "secret",
                  prefix: str = "mail-api", rotator_token_ttl: str = "1h") -> DevCredentials:
        creds = bootstrap_vault(self.root_client(), consumers, mount, prefix, rotator_token_ttl=rotator_token_ttl)
        return bootstrap_aws(self.aws_session(), self.aws_endpoint, consumers, stack, creds)

    def env(self, creds: DevCredentials, *, stack: str = "dev", mount: str = "secret",
            prefix: str = "mail-api") -> dict[str, str]:
        """Environment variables for a rotation process on this stack (rotator AppRole)."""
        return {
            "VAULT_ADDR": self.vault_addr,
            "VAULT_AUTH_METHOD": "approle",
            "VAULT_ROLE_ID": creds.rotator_role_id,
            "VAULT_SECRET_ID": creds.rotator_secret_id,
            "VAULT_KV_MOUNT": mount,
            "VAULT_KV_PREFIX": prefix,
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_REGION": DEV_REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "ROTATION_STACK": stack,
        }
