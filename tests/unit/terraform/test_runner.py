"""The runner's process handling, with a stand-in `terraform` script (fast; the real binary is
exercised by tests/integration/terraform)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tenantctl.errors import ExternalCommandError
from tenantctl.terraform.runner import (
    DestroyPreventedError,
    OperationInterrupted,
    StalePlanError,
    StateLockedError,
    TerraformEvent,
    TerraformRunner,
    _raise_known_failures,
)
from tenantctl.terraform.toolchain import Toolchain

LOCK_ERROR = """Error: Error acquiring the state lock
Error message: ConditionalCheckFailedException: The conditional request failed
Lock Info:
  ID:        6f1c2a7e-0000-4000-8000-000000000001
  Path:      tf-state/tenantctl/cluster.tfstate
  Operation: OperationTypeApply
  Who:       alice@ci-runner-7
  Version:   1.0.3
  Created:   2026-11-23 09:00:00.000000 +0000 UTC
  Info:
"""


def test_lock_error_names_the_holder() -> None:
    with pytest.raises(StateLockedError) as caught:
        _raise_known_failures(LOCK_ERROR, ["terraform", "plan"])
    assert "alice@ci-runner-7" in caught.value.message
    assert "OperationTypeApply" in caught.value.message
    assert caught.value.holder["id"] == "6f1c2a7e-0000-4000-8000-000000000001"
    assert caught.value.exit_code == 3


def test_prevent_destroy_and_stale_plan_are_refusals() -> None:
    detail = ('Error: Instance cannot be destroyed\n\nResource aws_rds_cluster.this["spare"] has '
              "lifecycle.prevent_destroy set, but the plan calls for this resource to be destroyed.")
    with pytest.raises(DestroyPreventedError) as caught:
        _raise_known_failures(detail, [])
    assert caught.value.addresses == ('aws_rds_cluster.this["spare"]',)
    with pytest.raises(StalePlanError):
        _raise_known_failures("Error: Saved plan is stale", [])
    _raise_known_failures("Error: something else", [])  # not translated: the caller raises generically


def fake_terraform(tmp_path: Path, body: str) -> Toolchain:
    script = tmp_path / "terraform"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return Toolchain(terraform=script, cli_config=tmp_path / "rc", plugin_cache=tmp_path / "cache")


def test_plan_uses_detailed_exitcode_and_streams_events(tmp_path: Path) -> None:
    toolchain = fake_terraform(tmp_path, """
        import json, os, sys
        assert os.environ["TF_IN_AUTOMATION"] == "1" and "-input=false" in sys.argv
        with open(os.environ["ARGS_FILE"], "w") as fh:
            json.dump(sys.argv[1:], fh)
        print(json.dumps({"type": "planned_change", "@message": "x: Plan to create",
                          "change": {"resource": {"addr": "aws_iam_user.x"}, "action": "create"}}))
        sys.exit(int(os.environ["EXIT"]))
    """)
    events: list[TerraformEvent] = []
    args_file = tmp_path / "args.json"
    runner = TerraformRunner(toolchain, tmp_path, env={"EXIT": "2", "ARGS_FILE": str(args_file)},
                             on_event=events.append)
    assert runner.plan(tmp_path / "p.tfplan", var_files=[tmp_path / "v.json"]).has_changes
    assert events == [TerraformEvent("planned_change", "aws_iam_user.x", "create", None, "x: Plan to create")]
    args = __import__("json").loads(args_file.read_text())
    assert args[0] == "plan" and "-detailed-exitcode" in args and f"-out={tmp_path / 'p.tfplan'}" in args
    assert f"-var-file={tmp_path / 'v.json'}" in args
    runner.extra_env["EXIT"] = "0"
    assert not runner.plan(tmp_path / "p.tfplan").has_changes


def test_failure_carries_command_exit_code_and_error_tail(tmp_path: Path) -> None:
    toolchain = fake_terraform(tmp_path, """
        import json, sys
        print(json.dumps({"type": "diagnostic", "diagnostic": {"severity": "error", "summary": "Bad thing",
                                                               "detail": "it broke"}}))
        sys.stderr.write("stderr line\\n")
        sys.exit(1)
    """)
    with pytest.raises(ExternalCommandError) as caught:
        TerraformRunner(toolchain, tmp_path).plan(tmp_path / "p")
    error = caught.value
    assert error.returncode == 1 and error.argv[1] == "plan"
    assert "Bad thing" in error.message and "it broke" in error.message and "stderr line" in error.message


def test_missing_binary_is_a_clean_error(tmp_path: Path) -> None:
    toolchain = Toolchain(terraform=tmp_path / "nope", cli_config=tmp_path, plugin_cache=tmp_path)
    with pytest.raises(ExternalCommandError):
        TerraformRunner(toolchain, tmp_path).init()


INTERRUPTIBLE = """
    import os, signal, sys, time
    marker = os.environ["MARKER"]
    def stop(signum, frame):
        with open(marker, "a") as fh:
            fh.write("SIGINT\\n")
        time.sleep(0.3)  # graceful: "release the lock", then exit
        sys.exit(1)
    signal.signal(signal.SIGINT, stop)
    with open(marker, "a") as fh:
        fh.write("started\\n")
    time.sleep(60)
"""


def test_ctrl_c_is_forwarded_once_and_waited_for(tmp_path: Path) -> None:
    """tenantctl gets SIGINT; the fake terraform gets exactly one and finishes before tenantctl exits."""
    fake_terraform(tmp_path, INTERRUPTIBLE)
    marker = tmp_path / "marker"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from tenantctl.terraform.runner import TerraformRunner, forwarding_interrupts, OperationInterrupted
        from tenantctl.terraform.toolchain import Toolchain
        tc = Toolchain(terraform=Path({str(tmp_path / "terraform")!r}), cli_config=Path("/x"), plugin_cache=Path("/y"))
        with forwarding_interrupts():
            try:
                TerraformRunner(tc, Path({str(tmp_path)!r}), env={{"MARKER": {str(marker)!r}}}).apply(Path("p"))
            except OperationInterrupted as error:
                print("interrupted:", error.message)
                sys.exit(130)
    """))
    process = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and "started" in marker.read_text()):
            assert time.monotonic() < deadline, "fake terraform never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stdout
    assert marker.read_text().count("SIGINT") == 1
    assert "Traceback" not in stderr


def test_interrupt_flag_stops_new_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tenantctl.terraform import runner as runner_module

    toolchain = fake_terraform(tmp_path, "import sys; sys.exit(0)\n")
    monkeypatch.setattr(runner_module._INTERRUPTS, "interrupted", True)
    with pytest.raises(OperationInterrupted):
        TerraformRunner(toolchain, tmp_path).init()


OUTLIVES = """
    import os, sys, time
    marker, go = os.environ["MARKER"], os.environ["GO"]
    print('{"type": "apply_start"}', flush=True)
    with open(marker, "a") as fh:
        fh.write("started\\n")
    while not os.path.exists(go):  # tenantctl is SIGKILLed meanwhile
        time.sleep(0.01)
    for number in range(200):  # through a pipe: BrokenPipeError (real terraform: SIGPIPE), state not written
        print('{"type": "apply_complete", "n": %d}' % number, flush=True)
    with open(marker, "a") as fh:
        fh.write("finished\\n")
"""


def test_terraform_finishes_its_operation_when_tenantctl_is_killed(tmp_path: Path) -> None:
    """SIGKILL tenantctl mid-apply: Terraform (own session, output to files) still writes its state."""
    fake_terraform(tmp_path, OUTLIVES)
    marker, go, scratch = tmp_path / "marker", tmp_path / "go", tmp_path / "tmp"
    scratch.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from tenantctl.terraform.runner import TerraformRunner
        from tenantctl.terraform.toolchain import Toolchain
        tc = Toolchain(terraform=Path({str(tmp_path / "terraform")!r}), cli_config=Path("/x"), plugin_cache=Path("/y"))
        env = {{"MARKER": {str(marker)!r}, "GO": {str(go)!r}}}
        TerraformRunner(tc, Path({str(tmp_path)!r}), env=env, on_event=print).apply(Path("p"))
    """))
    process = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                                               "TMPDIR": str(scratch)})
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and "started" in marker.read_text()):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "fake terraform never started"
            time.sleep(0.02)
        process.kill()
        process.wait(timeout=30)
        go.touch()
        while "finished" not in marker.read_text():
            assert time.monotonic() < deadline, "terraform died with tenantctl: " + marker.read_text()
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert list(scratch.iterdir()) == [], "the output files are unlinked at once"


def test_output_is_followed_line_by_line_while_terraform_runs(tmp_path: Path) -> None:
    toolchain = fake_terraform(tmp_path, """
        import json, sys, time
        for number in range(3):
            print(json.dumps({"type": "apply_progress", "@message": str(number)}), flush=True)
            time.sleep(0.3)
        sys.stdout.write(json.dumps({"type": "apply_complete", "@message": "last, no newline"}))
    """)
    seen: list[tuple[str, float]] = []
    runner = TerraformRunner(toolchain, tmp_path, on_event=lambda e: seen.append((e.message, time.monotonic())))
    runner.apply(tmp_path / "p")
    assert [message for message, _ in seen] == ["0", "1", "2", "last, no newline"]
    assert seen[-1][1] - seen[0][1] > 0.4, "events arrive while terraform runs, not all at its exit"


# What Terraform 1.11 prints when init cannot get the providers (wrapped as it wraps them): the aws target's
# registry unreachable for both providers of a terraform-engine tenant stack; the local target's mirror
# without the version the stack asks for.
INIT_FAILURE = """
    import os, sys
    print("Initializing provider plugins...")
    print('- Finding hashicorp/aws versions matching ">= 4.61.0"...')
    print('- Finding cyrilgdn/postgresql versions matching "1.26.0"...')
    aws = ("could not connect to registry.terraform.io: failed to request discovery\\ndocument: Get "
           "\\"https://registry.terraform.io/.well-known/terraform.json\\": dial tcp: no such host")
    if os.environ.get("MIRROR"):
        aws = "no available releases match the given constraints >= 4.61.0"
    sys.stderr.write(
        "\\nError: Failed to query available provider packages\\n\\nCould not retrieve the list of available "
        "versions for provider hashicorp/aws:\\n" + aws + "\\n\\nTo see which modules are currently depending on "
        "hashicorp/aws and what\\nversions are specified, run the following command:\\n    terraform providers\\n"
        "\\nError: Failed to query available provider packages\\n\\nCould not retrieve the list of available "
        "versions for provider\\ncyrilgdn/postgresql: could not connect to registry.terraform.io: failed to\\n"
        "request discovery document: Get\\n\\"https://registry.terraform.io/.well-known/terraform.json\\": dial "
        "tcp\\n\\nTo see which modules are currently depending on cyrilgdn/postgresql and what\\nversions are "
        "specified, run the following command:\\n    terraform providers\\n")
    sys.exit(1)
"""


def test_an_init_that_cannot_get_its_providers_names_each_with_its_version_and_what_to_do(tmp_path: Path) -> None:
    from dataclasses import replace

    from tenantctl.terraform.runner import ProviderUnavailableError

    toolchain = replace(fake_terraform(tmp_path, INIT_FAILURE), target="aws")
    with pytest.raises(ProviderUnavailableError) as caught:
        TerraformRunner(toolchain, tmp_path).init()
    error = caught.value
    # Every provider that failed, with the constraint the stack asks for (from init's own output), and why.
    assert error.providers == {"hashicorp/aws": ">= 4.61.0", "cyrilgdn/postgresql": "1.26.0"}
    assert "hashicorp/aws >= 4.61.0: registry.terraform.io is unreachable" in error.message
    assert "cyrilgdn/postgresql 1.26.0: registry.terraform.io is unreachable" in error.message
    assert error.hint is not None
    assert all(option in error.hint for option in ("registry.terraform.io", "TF_CLI_CONFIG_FILE", "network_mirror",
                                                   "terraform providers mirror", "plugin cache"))


def test_a_local_target_init_that_cannot_get_its_providers_says_what_the_local_target_offers(
    tmp_path: Path,
) -> None:
    from tenantctl.terraform.runner import ProviderUnavailableError

    with pytest.raises(ProviderUnavailableError) as caught:
        TerraformRunner(fake_terraform(tmp_path, INIT_FAILURE), tmp_path, env={"MIRROR": "1"}).init()
    error = caught.value
    assert "hashicorp/aws >= 4.61.0: no available releases match the given constraints >= 4.61.0" in error.message
    assert "cyrilgdn/postgresql 1.26.0: registry.terraform.io is unreachable" in error.message
    assert error.hint is not None and "offline mirror" in error.hint and 'postgres_engine = "native"' in error.hint


def test_other_init_failures_stay_the_raw_command_error(tmp_path: Path) -> None:
    broken = fake_terraform(tmp_path, """
        import sys
        sys.stderr.write("Error: Unsupported block type\\n")
        sys.exit(1)
    """)
    with pytest.raises(ExternalCommandError) as caught:
        TerraformRunner(broken, tmp_path).init()
    assert "Unsupported block type" in caught.value.message
