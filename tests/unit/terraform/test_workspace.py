from __future__ import annotations

from pathlib import Path

from tenantctl.terraform.workspace import (
    Workspace,
    content_hash,
    read_stack_files,
    slug,
    sync_work_dir,
    tenant_of,
    tenant_stack,
)


def test_content_hash_depends_on_files_and_inputs_only() -> None:
    files = {"main.tf": b"a", "vars.tf": b"b"}
    base = content_hash(files, {"cluster": {"endpoint": "x"}})
    assert base == content_hash(dict(reversed(list(files.items()))), {"cluster": {"endpoint": "x"}})
    assert base != content_hash({**files, "main.tf": b"a "}, {"cluster": {"endpoint": "x"}})
    assert base != content_hash(files, {"cluster": {"endpoint": "y"}})
    # a file boundary moving is a different content
    assert content_hash({"a.tf": b"xy", "b.tf": b""}, {}) != content_hash({"a.tf": b"x", "b.tf": b"y"}, {})


def test_sync_work_dir_mirrors_terraform_files_and_keeps_terraform_data(tmp_path: Path) -> None:
    work = tmp_path / "work"
    sync_work_dir({"main.tf": b"one", "old.tf": b"x"}, work)
    (work / ".terraform").mkdir()
    (work / ".terraform.lock.hcl").write_text("lock")
    sync_work_dir({"main.tf": b"two"}, work)
    assert sorted(p.name for p in work.iterdir()) == [".terraform", ".terraform.lock.hcl", "main.tf"]
    assert (work / "main.tf").read_bytes() == b"two"


def test_read_stack_files_reads_only_terraform_files(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text("x")
    (tmp_path / "x.tf.json").write_text("{}")
    (tmp_path / "README.md").write_text("no")
    (tmp_path / "sub").mkdir()
    assert sorted(read_stack_files(tmp_path)) == ["main.tf", "x.tf.json"]
    assert read_stack_files(tmp_path / "missing") == {}


def test_names_and_paths(tmp_path: Path) -> None:
    workspace = Workspace.at(tmp_path)
    assert tenant_stack("a") == "tenants/a" and tenant_of("tenants/a") == "a" and tenant_of("cluster") is None
    assert slug("tenants/a") == "tenants__a"
    assert workspace.local_state_file("tenants/a") == tmp_path.resolve() / ".tenantctl/state/tenants/a.tfstate"
    state = workspace.local_state_file("tenants/a")
    state.parent.mkdir(parents=True)
    state.write_text('{"resources": []}')
    assert workspace.local_state_stacks() == []
    state.write_text('{"resources": [{"type": "aws_iam_user"}]}')
    assert workspace.local_state_stacks() == ["tenants/a"]
