"""The crash-recovery plumbing, fast: failpoints, and partial dumps that a resumed offboarding removes.
The crashes themselves (SIGKILL during applies and an offboarding, then reruns) are in
tests/e2e/test_lifecycle.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tenantctl
from tenantctl.errors import ExternalCommandError
from tenantctl.failpoint import ENV, POINTS
from tenantctl.workflow.archive import PARTIAL_DIR, Archive, DumpSource

SOURCE = Path(tenantctl.__file__).parent
CALL = re.compile(r"""\bfailpoint\(\s*["']([^"']+)["']\s*\)""")


def run_failpoint(name: str, armed: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if armed is not None:
        env[ENV] = armed
    code = f"from tenantctl.failpoint import failpoint; failpoint({name!r}); print('survived')"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_an_armed_failpoint_sigkills_the_process_there() -> None:
    done = run_failpoint("terraform-applied", "routes-before-write, terraform-applied")
    assert done.returncode == -signal.SIGKILL
    assert "failpoint terraform-applied: SIGKILL" in done.stderr and "survived" not in done.stdout


@pytest.mark.parametrize("armed", [None, "", "routes-before-write"])
def test_other_or_no_failpoints_do_nothing(armed: str | None) -> None:
    done = run_failpoint("terraform-applied", armed)
    assert done.returncode == 0 and done.stdout == "survived\n" and done.stderr == ""


def test_every_failpoint_is_documented_and_every_documented_one_is_used() -> None:
    used = {name for path in SOURCE.rglob("*.py") if path.name != "failpoint.py"
            for name in CALL.findall(path.read_text())}
    assert used == set(POINTS)


# --- partial dumps ----------------------------------------------------------------------------------

@pytest.fixture
def fake_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`pg_dump` on PATH that writes a small file to its -f argument (exit code from $FAKE_EXIT)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pg_dump"
    script.write_text(f"#!{sys.executable}\n" + (
        "import os, sys\n"
        "out = sys.argv[sys.argv.index('-f') + 1]\n"
        "open(out, 'wb').write(b'PGDMP' + sys.argv[sys.argv.index('-d') + 1].encode())\n"
        "sys.exit(int(os.environ.get('FAKE_EXIT', '0')))\n"))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


SOURCE_DB = DumpSource("127.0.0.1", 5432, "admin", "secret")


def test_a_dump_replaces_what_an_interrupted_one_left_and_leaves_nothing(tmp_path: Path,
                                                                        fake_pg_dump: Path) -> None:
    archive = Archive(str(tmp_path / "archive"))
    staging = tmp_path / "archive" / PARTIAL_DIR
    stale = staging / "acme" / "run1" / "acme_db1.dump.4242-deadbeef.partial"  # a killed run's pg_dump
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"PGDMP half")
    other = staging / "acme" / "run1" / "acme_db2.dump.4242-deadbeef.partial"  # another database: kept
    other.write_bytes(b"PGDMP half")
    dump = archive.dump(SOURCE_DB, "acme_db1", "acme/run1/acme_db1.dump")
    assert Path(dump.location).read_bytes() == b"PGDMPacme_db1"
    assert Path(dump.location) == tmp_path / "archive" / "acme" / "run1" / "acme_db1.dump"
    assert not stale.exists() and other.exists()
    archive.discard_partials("acme/run1")
    assert not staging.exists(), "the resumed run removes the staging directory once it is empty"


def test_a_failed_dump_leaves_no_partial_file(tmp_path: Path, fake_pg_dump: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_EXIT", "1")
    archive = Archive(str(tmp_path / "archive"))
    with pytest.raises(ExternalCommandError):
        archive.dump(SOURCE_DB, "acme_db1", "acme/run1/acme_db1.dump")
    assert not (tmp_path / "archive" / PARTIAL_DIR).exists()
    assert not (tmp_path / "archive" / "acme").exists()


def test_s3_dumps_are_staged_where_the_caller_says(tmp_path: Path, fake_pg_dump: Path) -> None:
    uploads: list[tuple[str, bytes]] = []

    class FakeS3:
        def put_object(self, *, Bucket: str, Key: str, Body: object, Metadata: dict[str, str]) -> None:
            uploads.append((f"{Bucket}/{Key}", Body.read()))  # type: ignore[attr-defined]

    staging = tmp_path / ".tenantctl" / "partial-dumps"
    archive = Archive("s3://bucket/prefix", FakeS3(), staging=staging)
    dump = archive.dump(SOURCE_DB, "acme_db1", "acme/run1/acme_db1.dump")
    assert dump.location == "s3://bucket/prefix/acme/run1/acme_db1.dump"
    assert uploads == [("bucket/prefix/acme/run1/acme_db1.dump", b"PGDMPacme_db1")]
    assert not staging.exists()


# --- a plan whose apply was killed --------------------------------------------------------------

@pytest.mark.parametrize(("status", "message"), [("applying", "partly applied by a run that was interrupted"),
                                                 ("applied", "was already applied")])
def test_a_plan_an_interrupted_apply_started_is_not_applied_again(tmp_path: Path, status: str,
                                                                  message: str) -> None:
    from tenantctl.errors import RefusedError
    from tenantctl.terraform.manifest import PlanManifest
    from tenantctl.terraform.pipeline import check_applicable
    from tenantctl.terraform.workspace import Workspace

    manifest = PlanManifest(plan_id="p1", created_at=0.0, status=status, clients_file="c", clients_sha256="",
                            tenantctl_version="x", terraform_version="1.0.3", terraform_binary="terraform",
                            target="local", backend="local", all_stacks=False)
    with pytest.raises(RefusedError) as caught:
        check_applicable(manifest, Workspace.at(tmp_path), None)  # type: ignore[arg-type]
    assert message in caught.value.message and "tenantctl plan" in (caught.value.hint or "")
