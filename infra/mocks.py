"""Run the Pulumi program offline under ``pulumi.runtime`` mocks and record every resource.

Used by ``tests/unit/infra`` and by the policy-as-code checks (``make policy-check``), in pytest or
in a plain ``python`` process. No Pulumi CLI, cloud or credentials are needed.

Public API::

    RecordedResource(typ, name, inputs, urn=None)     frozen dataclass, one per registered
        resource, ComponentResources included (their typ starts "secure-mail-api:"); ``inputs`` are the
        camelCase wire-form inputs exactly as the mock monitor received them (ints arrive as
        floats, e.g. ``limit == 300.0``); ``urn`` is the full URN from the mock monitor.
    RecordingMocks()                                  pulumi.runtime.Mocks subclass; ``.resources``
    ProgramRun(resources, stack, mocks, exports, secret_exports)   result of :func:`run_program`
    run_program(config=None, secret_keys=None, *, stack="dev", preview=False, mocks=None,
                require_artifacts=False) -> ProgramRun
    record_program(config=None, secret_keys=None) -> list[RecordedResource]
    ACCOUNT_ID                                        "123456789012", the mocked account

``config`` is ``{"secure-mail-api:<key>": "<string or JSON>", "aws:region": ...}``; None means the
values of ``Pulumi.dev.yaml`` (:func:`infra.config.dev_stack_config`). Keys given replace the
whole map (as ``set_all_config`` does), so pass a full config or start from ``dev_stack_config()``.

Both functions can be called any number of times in one process: each call resets the root
stack resource and installs a fresh mock monitor. They return only after every registered
resource (and every exported output) has resolved, so the list is complete. Bad config raises
``infra.config.ConfigError`` before any resource is declared.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import settings as _settings

from infra.config import PROJECT, dev_stack_config

__all__ = ["ACCOUNT_ID", "ProgramRun", "RecordedResource", "RecordingMocks", "record_program", "run_program"]

ACCOUNT_ID = "123456789012"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class RecordedResource:
    """One ``new_resource`` call: type token, logical name, camelCase inputs, URN."""

    typ: str
    name: str
    inputs: dict[str, Any]
    urn: str | None = None


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that record every resource and return plausible provider outputs.

    Outputs echo the inputs and add ``arn``, ``id``-like attributes (``keyId``, ``rootResourceId``,
    ``executionArn``, ``invokeArn``, ``url``, ``name``...) so downstream ``apply`` code sees
    realistic strings, the way a preview would resolve them after create.
    """

    def __init__(self, region: str = "eu-west-1") -> None:
        self.region = region
        self.resources: list[RecordedResource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources.append(RecordedResource(args.typ, args.name, dict(args.inputs)))
        rid = f"{args.name}-id"
        module = args.typ.split(":")[1].split("/")[0]
        name = args.inputs.get("name") or args.inputs.get("bucket") or args.name
        outputs: dict[str, Any] = {**args.inputs, "arn": f"arn:aws:{module}:{self.region}:{ACCOUNT_ID}:{args.name}"}
        outputs.setdefault("name", name)
        if args.typ == "aws:kms/key:Key":
            outputs["keyId"] = rid
            outputs["arn"] = f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{rid}"
        elif args.typ == "aws:s3/bucket:Bucket":
            outputs["bucket"] = f"{args.name}-bucket"
            outputs["arn"] = f"arn:aws:s3:::{args.name}-bucket"
        elif args.typ == "aws:apigateway/restApi:RestApi":
            outputs["rootResourceId"] = f"{args.name}-root"
            outputs["executionArn"] = f"arn:aws:execute-api:{self.region}:{ACCOUNT_ID}:{rid}"
        elif args.typ == "aws:apigateway/stage:Stage":
            outputs["arn"] = f"arn:aws:apigateway:{self.region}::/restapis/api/stages/{args.inputs.get('stageName')}"
        elif args.typ == "aws:apigateway/domainName:DomainName":
            outputs["regionalDomainName"] = f"d-{rid}.execute-api.{self.region}.amazonaws.com"
        elif args.typ == "aws:lambda/function:Function":
            outputs["invokeArn"] = (f"arn:aws:apigateway:{self.region}:lambda:path/2015-03-31/functions/"
                                    f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}/invocations")
        elif args.typ == "aws:sqs/queue:Queue":
            outputs["url"] = f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}"
        elif args.typ == "aws:signer/signingProfile:SigningProfile":
            outputs["arn"] = f"arn:aws:signer:{self.region}:{ACCOUNT_ID}:/signing-profiles/{name}"
            outputs["version"] = "Mock0Ver01"
            outputs["versionArn"] = f"{outputs['arn']}/Mock0Ver01"
        elif args.typ == "aws:s3/bucketObjectv2:BucketObjectv2":
            outputs["versionId"] = f"{args.name}-version"
        elif args.typ == "aws:signer/signingJob:SigningJob":
            dest = (args.inputs.get("destination") or {}).get("s3") or {}
            outputs["jobId"] = rid
            outputs["signedObjects"] = [{"s3s": [{"bucket": dest.get("bucket", ""),
                                                  "key": f"{dest.get('prefix', '')}{rid}.zip"}]}]
        elif args.typ == "aws:cognito/userPoolClient:UserPoolClient":
            outputs["clientSecret"] = "mock-client-secret-not-real"
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root", "userId": "mock",
                    "id": ACCOUNT_ID}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        return {}, []


@dataclass
class ProgramRun:
    """Result of :func:`run_program`: recorded resources, the ``MailApiStack`` handles, the mocks."""

    resources: list[RecordedResource]
    stack: Any
    mocks: RecordingMocks
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: set[str] = field(default_factory=set)


def run_program(
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    *,
    stack: str = "dev",
    preview: bool = False,
    mocks: RecordingMocks | None = None,
    require_artifacts: bool = False,
) -> ProgramRun:
    """Run ``infra.program.main`` under fresh mocks and wait for every resource to register.

    Returns a :class:`ProgramRun` whose ``exports`` holds the resolved stack outputs as plain
    values and ``secret_exports`` the names of outputs Pulumi marks secret. Raises
    ``ConfigError`` on bad config. Pass ``mocks`` to keep a handle on the recorder even when the
    run raises. ``require_artifacts`` runs the program as ``pulumi up`` does (``infra/__main__.py``):
    a Lambda package missing from ``dist/`` raises ``infra.artifacts.ArtifactMissing``.
    """
    from infra.program import main

    values = dict(dev_stack_config() if config is None else config)
    region = values.get("aws:region", "eu-west-1")
    mocks = mocks if mocks is not None else RecordingMocks(region=region)
    holder: dict[str, Any] = {}
    with _LOCK:
        _settings.ROOT.set(None)  # a fresh root Stack resource per run
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview)
        pulumi.runtime.set_all_config(values, list(secret_keys or []))

        @pulumi.runtime.test
        def _run():
            holder["stack"] = program = main(require_artifacts=require_artifacts)

            names = list(program.exports)

            def collect(resolved: list[Any]) -> None:
                values, secret = resolved[: len(names)], resolved[len(names):]
                holder["exports"] = dict(zip(names, values))
                holder["secret_exports"] = {n for n, s in zip(names, secret) if s}

            secrecy = [pulumi.Output.from_input(o.is_secret()) for o in program.exports.values()]
            return pulumi.Output.all(*program.exports.values(), *secrecy).apply(collect)

        _run()
        monitor = _settings.SETTINGS.monitor
        urns = {}
        for urn in getattr(monitor, "resources", {}):
            typ, name = urn.split("::")[-2].split("$")[-1], urn.split("::")[-1]
            urns[(typ, name)] = urn
    resources = [RecordedResource(r.typ, r.name, r.inputs, urns.get((r.typ, r.name))) for r in mocks.resources]
    return ProgramRun(resources=resources, stack=holder.get("stack"), mocks=mocks,
                      exports=holder.get("exports", {}), secret_exports=holder.get("secret_exports", set()))


def record_program(config: dict[str, str] | None = None, secret_keys: list[str] | None = None) -> list[RecordedResource]:
    """Run the program under mocks and return every recorded resource (complete, awaited).

    ``config`` None = ``Pulumi.dev.yaml``. See :func:`run_program`.
    """
    return run_program(config, secret_keys).resources


if __name__ == "__main__":  # pragma: no cover - manual smoke check
    recorded = record_program()
    print(f"{len(recorded)} resources")
    for r in recorded:
        print(r.typ, r.name)
