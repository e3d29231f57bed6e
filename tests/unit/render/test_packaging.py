"""The packaged templates are the repository's templates/, reachable the way an installed wheel finds them."""

from __future__ import annotations

from pathlib import Path

import tenantctl
from tenantctl.render.environment import packaged_templates_dir

REPO = Path(__file__).resolve().parents[3]


def test_packaged_templates_are_the_repository_templates() -> None:
    assert packaged_templates_dir() == (REPO / "templates").resolve()


def test_package_path_leads_to_the_templates_as_in_a_wheel() -> None:
    # pyproject maps tenantctl.templates to templates/; inside the source tree cli/tenantctl/templates
    # links there so that setuptools' package discovery ships it and editable installs find it.
    in_package = Path(tenantctl.__file__).resolve().parent / "templates"
    assert in_package.resolve() == (REPO / "templates").resolve()
    assert sorted(p.name for p in (in_package / "tenant").glob("*.tf.j2"))
