"""Every command written in README.md and docs/ exists: its subcommands and options are checked
against the CLI's own click command tree (and the Makefile's targets), so a renamed or removed
command or option fails here before a reader copies it."""

from __future__ import annotations

import pytest

from tests.support.doc_commands import DocCommand, check_command, documented_commands

COMMANDS = documented_commands()


def test_the_docs_are_scanned_and_hold_commands_of_every_kind():
    programs = {c.program for c in COMMANDS}
    assert programs == {"rotation", "rotation.dev", "make"}
    assert len([c for c in COMMANDS if c.program == "rotation"]) >= 40
    assert {c.file for c in COMMANDS} >= {"README.md", "docs/operations.md", "docs/deploy.md"}


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_documented_command_and_option_exists_in_the_cli(command: DocCommand):
    assert check_command(command) == [], str(command)


@pytest.mark.parametrize(("words", "problem"), [
    (("rotation", "run", "--json", "--audit-to", "a.jsonl"), "`rotation run` has no option --audit-to"),
    (("rotation", "rotate", "crm", "--urgent"), "`rotation rotate` has no option --urgent"),
    (("rotation", "revoke", "crm"), "`rotation` has no subcommand 'revoke'"),
    (("rotation", "vault", "init"), "`rotation vault` has no subcommand 'init'"),
    (("rotation.dev", "up", "--consumers", "x.yaml"), "`python -m rotation.dev up` has no option --consumers"),
    (("rotation.dev", "gateway", "--listen", "x"), "`python -m rotation.dev gateway` has no option --listen"),
    (("make", "deploy"), "the Makefile has no target 'deploy'"),
])
def test_the_check_fails_when_a_documented_command_or_option_does_not_exist(words, problem):
    problems = check_command(words)
    assert problems and problems[0].startswith(problem), problems


def test_global_options_are_accepted_before_the_command_and_refused_after_it():
    assert check_command(("rotation", "--audit-to", "a.jsonl", "run", "--json", "--workers", "16")) == []
    assert check_command(("rotation", "--consumers", "c.yaml", "vault", "setup", "--setup", "s.yaml",
                          "--dry-run")) == []
    assert check_command(("rotation", "status", "--consumers", "c.yaml"))


def test_the_runbooks_need_only_what_a_rotator_install_has():
    from tests.support.doc_commands import ROOT

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    start = text.index("### Onboarding a new consuming app")
    onboarding = text[start:text.index("\n#", start + 5)]
    assert "policies.vault" not in text and "from policies" not in text          # not in a [rotator] install
    assert "vault setup --setup" in onboarding and "bao write auth/approle/role/" not in onboarding
