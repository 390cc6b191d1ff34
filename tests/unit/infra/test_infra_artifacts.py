"""The program deploys the packages `make package` builds (infra/artifacts.py): dist/mail-handler.zip
and dist/rotator.zip as FileArchives on the .zip (uploaded unchanged), for the runtime and
architecture the build targets; under `pulumi up` a missing package stops the program before any
resource, naming `make package`. Mock runs never read the files, so they need no build."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from infra import artifacts
from infra.artifacts import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, MAIL_HANDLER, ROTATOR, ArtifactMissing
from infra.config import dev_stack_config
from infra.mocks import RecordingMocks, run_program

REPO_ROOT = Path(__file__).resolve().parents[3]


@pulumi.runtime.test
def test_sender_code_is_the_built_mail_handler_zip_for_the_declared_platform(dev_run, h):
    def check(resources):
        (fn,) = [r for r in resources if r.typ == "aws:lambda/function:Function" and r.name == "sender-function"]
        assert isinstance(fn.inputs["code"], pulumi.FileArchive)
        assert Path(fn.inputs["code"].path) == REPO_ROOT / "dist" / "mail-handler.zip"
        assert fn.inputs["runtime"] == LAMBDA_RUNTIME == "python3.11"
        assert fn.inputs["architectures"] == [LAMBDA_ARCHITECTURE] == ["x86_64"]
        assert "layers" not in fn.inputs or not fn.inputs["layers"]  # no hand-built layer needed

    return h.check_recorded(dev_run, check)


def test_wheel_platform_follows_the_declared_architecture():
    assert artifacts.WHEEL_PLATFORM == {"x86_64": "manylinux2014_x86_64",
                                        "arm64": "manylinux2014_aarch64"}[LAMBDA_ARCHITECTURE]
    assert artifacts.ABI == "cp" + LAMBDA_RUNTIME.removeprefix("python").replace(".", "")


def test_pulumi_up_without_built_packages_stops_before_any_resource_naming_make_package(monkeypatch, tmp_path):
    monkeypatch.setattr(artifacts, "ARTIFACTS_DIR", tmp_path)
    mocks = RecordingMocks()
    with pytest.raises(ArtifactMissing) as err:
        run_program(dev_stack_config(), require_artifacts=True, mocks=mocks)
    message = str(err.value)
    assert "make package" in message
    assert str(tmp_path / "mail-handler.zip") in message and str(tmp_path / "rotator.zip") in message
    assert mocks.resources == []


def test_pulumi_up_with_built_packages_proceeds(monkeypatch, tmp_path):
    monkeypatch.setattr(artifacts, "ARTIFACTS_DIR", tmp_path)
    for name in (MAIL_HANDLER, ROTATOR):
        (tmp_path / f"{name}.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    run = run_program(dev_stack_config(), require_artifacts=True)
    codes = [r.inputs["code"].path for r in run.resources if r.typ == "aws:lambda/function:Function"]
    assert sorted(codes) == sorted(str(tmp_path / f"{n}.zip") for n in (MAIL_HANDLER, ROTATOR))


def test_artifact_names_are_checked():
    with pytest.raises(ValueError, match="unknown artifact 'layer'"):
        artifacts.artifact_path("layer")
