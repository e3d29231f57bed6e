"""`tenantctl validate` and `tenantctl render` as a user runs them: exit codes, output, nothing written on error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tenantctl.errors import ExitCode
from tenantctl.model import load_model
from tenantctl.render import check_stacks

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "clients.tfvars.example"


def tenantctl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, check=False, env={**os.environ, "COLUMNS": "200"})


def test_committed_stacks_match_the_example() -> None:
    """The GitOps drift check on this repository itself: stacks/ is what clients.tfvars.example renders."""
    assert check_stacks(load_model(EXAMPLE), REPO / "stacks") == []


def test_validate_valid_and_json(tmp_path: Path) -> None:
    ok = tenantctl("validate", str(EXAMPLE), cwd=tmp_path)
    assert ok.returncode == ExitCode.OK
    assert "valid — 3 tenants, 5 databases on 3 clusters" in ok.stdout
    doc = json.loads(tenantctl("validate", str(EXAMPLE), "--format", "json", cwd=tmp_path).stdout)
    assert doc["valid"] is True and doc["tenants"] == 3 and doc["clusters"]["premium-acme"]["dedicated"] is True


def test_validate_invalid_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "clients.tfvars"
    bad.write_text('clients = [\n  { name = "Bad", databases = {}, allowed_ips = ["1.2.3.4/8"] },\n]\n')
    result = tenantctl("validate", cwd=tmp_path)  # default file: ./clients.tfvars
    assert result.returncode == ExitCode.INVALID
    assert result.stderr.splitlines()[:3] == [
        'clients.tfvars:2:12: clients[0].name: "Bad" is not a valid tenant name: use lowercase letters, digits and '
        "`_`, starting with a letter (it names Postgres roles and IAM users)",
        "clients.tfvars:2:31: clients[0].databases: the tenant has no database: list at least one, e.g. "
        "`{ app = true }`",
        'clients.tfvars:2:50: clients[0].allowed_ips[0]: "1.2.3.4/8" has host bits set; did you mean "1.0.0.0/8"?',
    ]
    assert "Traceback" not in result.stderr
    doc = json.loads(tenantctl("validate", "--format", "json", cwd=tmp_path).stdout)
    assert doc["valid"] is False and len(doc["problems"]) == 3 and doc["problems"][0]["line"] == 2


def test_missing_clients_file_is_a_clear_error(tmp_path: Path) -> None:
    result = tenantctl("validate", cwd=tmp_path)
    assert result.returncode == ExitCode.INVALID
    assert "no clients file given and no clients.tfvars" in result.stderr


def test_render_writes_nothing_on_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "clients.tfvars").write_text('clients = [ { name = "x" } ]\n')
    result = tenantctl("render", cwd=tmp_path)
    assert result.returncode == ExitCode.INVALID
    assert not (tmp_path / "stacks").exists()


def test_render_then_check_detects_drift(tmp_path: Path) -> None:
    (tmp_path / "clients.tfvars").write_text(EXAMPLE.read_text())
    assert tenantctl("render", cwd=tmp_path).returncode == ExitCode.OK
    assert tenantctl("render", "--check", cwd=tmp_path).returncode == ExitCode.OK
    iam = tmp_path / "stacks" / "tenants" / "client02" / "iam.tf"
    iam.write_text(iam.read_text() + "# hand edit\n")
    stale = tenantctl("render", "--check", cwd=tmp_path)
    assert stale.returncode == ExitCode.FAILURE
    assert "tenants/client02/iam.tf" in stale.stderr
    assert iam.read_text().endswith("# hand edit\n")  # --check writes nothing


@pytest.mark.parametrize("command", ["validate", "render", "plan", "apply", "proxy", "onboard", "verify"])
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    result = tenantctl(command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "Usage" in result.stdout


def test_version(tmp_path: Path) -> None:
    assert tenantctl("--version", cwd=tmp_path).stdout.startswith("tenantctl 0.1.0")


# With the database name spliced in raw, this yields two valid tenants: `evil` and `evil2`.
INJECTION = 'app = true }\n    allowed_ips = ["109.241.200.0/24"]\n    rds_iam_auth = false\n  },\n  {\n' \
            '    name = "evil2"\n    databases = { x'


@pytest.mark.parametrize("args", [
    ("onboard", "evil", "--db", INJECTION, "--allowed-ip", "109.241.200.168/32", "--yes"),
    ("onboard", "evil", "--db", "app", "--allowed-ip", '1.2.3.4/32"]\n}, { name = "evil2', "--yes"),
    ("onboard", 'evil" }, { name = "evil2', "--db", "app", "--allowed-ip", "109.241.200.168/32", "--yes"),
    ("onboard", "evil", "--db", "app", "--tier", 'basic"\n name2 = "x', "--allowed-ip", "1.2.3.4/32", "--yes"),
    ("onboard", "evil", "--db", "app", "--cluster", "shared-01\"\n}", "--allowed-ip", "1.2.3.4/32", "--plan-only"),
    ("onboard", "evil_", "--db", "app", "--allowed-ip", "109.241.200.168/32", "--yes"),
])
def test_onboard_arguments_cannot_splice_syntax_into_the_clients_file(tmp_path: Path, args: tuple[str, ...]) -> None:
    clients = tmp_path / "clients.tfvars"
    clients.write_bytes(EXAMPLE.read_bytes())
    done = tenantctl(*args, cwd=tmp_path)
    assert done.returncode == ExitCode.INVALID, done.stdout + done.stderr
    assert "nothing was written" in done.stderr or "not a valid CIDR" in done.stderr
    assert clients.read_bytes() == EXAMPLE.read_bytes()
    assert not (tmp_path / "stacks").exists() and not (tmp_path / ".tenantctl").exists()


def test_the_clients_file_writer_emits_one_key_per_database_whatever_its_name() -> None:
    from tenantctl.model.edit import TenantBlock, add_tenant
    from tenantctl.model.hcl import parse_hcl

    text = EXAMPLE.read_text()
    edited = add_tenant(text, "clients.tfvars", TenantBlock("evil", (INJECTION,), ("1.2.3.4/32",), False))
    parsed = parse_hcl(edited).value["clients"].value
    assert len(parsed) == len(parse_hcl(text).value["clients"].value) + 1
    assert list(parsed[-1].value["databases"].value) == [INJECTION]  # one key, quoted: refused by validation


@pytest.mark.parametrize("args", [(), ("--out", "other stacks")])
def test_render_check_hint_works_when_followed_literally(tmp_path: Path, args: tuple[str, ...]) -> None:
    """A tenant removed from the file leaves its rendered stack: plain `render` never removes it."""
    import shlex

    (tmp_path / "clients.tfvars").write_text(EXAMPLE.read_text())
    assert tenantctl("render", *args, cwd=tmp_path).returncode == ExitCode.OK
    text = EXAMPLE.read_text()
    start = text.index('  {\n    name         = "client02"')
    end = text.index("  },\n", start) + len("  },\n")
    (tmp_path / "clients.tfvars").write_text(text[:start] + text[end:])
    stale = tenantctl("render", "--check", *args, cwd=tmp_path)
    assert stale.returncode == ExitCode.FAILURE
    hint = next(line for line in stale.stderr.splitlines() if line.startswith("hint: run `"))
    command = shlex.split(hint.split("`")[1])
    assert command[0] == "tenantctl"
    assert tenantctl(*command[1:], cwd=tmp_path).returncode == ExitCode.OK
    assert tenantctl("render", "--check", *args, cwd=tmp_path).returncode == ExitCode.OK
