"""render_stacks: writes only what changes, reports orphans, prunes only when asked."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tenantctl.model.types import Model
from tenantctl.render import TemplateError, render_files, render_stacks


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """relative path -> (inode, mtime_ns, bytes) for every file under root."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def without(model: Model, name: str) -> Model:
    return replace(model, tenants=tuple(t for t in model.tenants if t.name != name))


def test_first_render_writes_every_file(model: Model, tmp_path: Path) -> None:
    result = render_stacks(model, tmp_path)
    expected = render_files(model)
    assert result.written == tuple(sorted(expected))
    assert result.unchanged == () and result.orphaned == () and result.removed == ()
    assert {rel: data for rel, (_, _, data) in snapshot(tmp_path).items()} == expected
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_rendering_again_rewrites_nothing(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    before = snapshot(tmp_path)
    result = render_stacks(model, tmp_path)
    assert result.written == () and not result.changed
    assert result.unchanged == tuple(sorted(before))
    assert snapshot(tmp_path) == before  # same inodes and mtimes: not rewritten


def test_adding_a_tenant_writes_only_its_directory(model: Model, tmp_path: Path) -> None:
    render_stacks(without(model, "client02"), tmp_path)
    before = snapshot(tmp_path)
    result = render_stacks(model, tmp_path)
    assert result.written and all(rel.startswith("tenants/client02/") for rel in result.written)
    after = snapshot(tmp_path)
    assert {rel: after[rel] for rel in before} == before


def test_changing_one_tenant_rewrites_only_the_files_that_differ(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    before = snapshot(tmp_path)
    changed = replace(model.tenants[0], allowed_ips=("109.241.200.168/32", "8.8.4.4/32"))
    result = render_stacks(replace(model, tenants=(changed, *model.tenants[1:])), tmp_path)
    assert result.written == ("tenants/client01/iam.tf",)
    after = snapshot(tmp_path)
    assert after["tenants/client01/iam.tf"][0] != before["tenants/client01/iam.tf"][0]  # replaced by rename
    assert {k: v for k, v in after.items() if k != "tenants/client01/iam.tf"} == {
        k: v for k, v in before.items() if k != "tenants/client01/iam.tf"}


def test_removed_tenant_is_reported_not_deleted(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    (tmp_path / "tenants" / "client02" / "terraform.tfstate").write_text("{}")
    result = render_stacks(without(model, "client02"), tmp_path)
    assert result.orphaned == ("tenants/client02",)
    assert result.orphaned_tenants == ("client02",)
    assert result.removed == () and result.written == ()
    assert (tmp_path / "tenants" / "client02" / "iam.tf").is_file()


def test_prune_deletes_terraform_files_but_never_state(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    (tmp_path / "tenants" / "client03" / ".terraform.lock.hcl").write_text("lock")
    render_stacks(without(model, "client03"), tmp_path, prune=True)
    assert not (tmp_path / "tenants" / "client03").exists()

    render_stacks(model, tmp_path)
    (tmp_path / "tenants" / "client02" / "terraform.tfstate").write_text("{}")
    result = render_stacks(without(model, "client02"), tmp_path, prune=True)
    assert "tenants/client02/iam.tf" in result.removed
    assert (tmp_path / "tenants" / "client02" / "terraform.tfstate").read_text() == "{}"
    assert result.orphaned == ("tenants/client02",)  # still there: it holds state


def test_file_no_longer_rendered_in_a_live_stack_is_orphaned(
    make_model: Callable[..., Model], tmp_path: Path
) -> None:
    render_stacks(make_model(engine="terraform"), tmp_path)
    result = render_stacks(make_model(engine="native"), tmp_path)
    assert result.orphaned == tuple(f"tenants/{t}/postgres.tf" for t in ("client01", "client02", "client03"))
    assert result.orphaned_tenants == ()
    assert (tmp_path / "tenants" / "client01" / "postgres.tf").is_file()


def test_dot_files_are_left_alone(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    (tmp_path / "tenants" / "client01" / ".terraform.lock.hcl").write_text("lock")
    (tmp_path / "tenants" / ".cache").mkdir()
    result = render_stacks(model, tmp_path, prune=True)
    assert result.orphaned == () and result.removed == ()
    assert (tmp_path / "tenants" / "client01" / ".terraform.lock.hcl").read_text() == "lock"


def test_template_error_writes_nothing(model: Model, tmp_path: Path) -> None:
    templates = tmp_path / "templates" / "tenant"
    templates.mkdir(parents=True)
    (templates / "zz.tf.j2").write_text("{{ tenant.missing }}\n")
    out = tmp_path / "stacks"
    with pytest.raises(TemplateError):
        render_stacks(model, out, template_dirs=[tmp_path / "templates"])
    assert not out.exists()


def test_result_lists_overridden_templates(model: Model, tmp_path: Path) -> None:
    (tmp_path / "tenant").mkdir()
    (tmp_path / "tenant" / "outputs.tf.j2").write_text("# none\n")
    result = render_stacks(model, tmp_path / "out", template_dirs=[tmp_path])
    assert result.overridden_templates == ("tenant/outputs.tf.j2",)
    assert result.to_json()["overridden_templates"] == ["tenant/outputs.tf.j2"]


def test_files_are_readable_by_others(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    mode = os.stat(tmp_path / "cluster" / "main.tf").st_mode & 0o777
    assert mode == 0o644


def test_progress_reports_each_written_file(model: Model, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    result = render_stacks(model, tmp_path, progress=lambda done, total: calls.append((done, total)))
    total = len(result.written)
    assert calls == [(i, total) for i in range(1, total + 1)]
    calls.clear()
    render_stacks(model, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls == []
