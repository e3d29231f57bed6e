"""The Jinja2 environment: where templates come from and how values reach them.

Search order (first match wins, file by file, through a Jinja ``ChoiceLoader``):

1. the directories passed explicitly (``--templates DIR``), in the order given; or, when none are
   given, ``./templates`` in the current working directory if it exists;
2. the templates packaged with tenantctl (``tenantctl.templates``; the repository's ``templates/``).

The environment uses ``StrictUndefined`` (a misspelt variable is an error, not an empty string),
is compiled once per search path and cached, and never auto-reloads.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from tenantctl.errors import InputError
from tenantctl.render import hcl

CLUSTER_TEMPLATES = "cluster"
TENANT_TEMPLATES = "tenant"
TEMPLATE_SUFFIX = ".j2"


class TemplateError(InputError):
    """A template could not be loaded or rendered; names the template file and line."""


def packaged_templates_dir() -> Path:
    """The templates shipped with tenantctl.

    Installed wheels carry them as ``tenantctl/templates`` (package data of ``tenantctl.templates``);
    in the repository that path is a symlink to the top-level ``templates/``, which is also tried
    directly in case the symlink is missing (e.g. a checkout on a file system without symlinks).
    """
    import tenantctl

    package_dir = Path(tenantctl.__file__).resolve().parent
    for candidate in (package_dir / "templates", package_dir.parents[1] / "templates"):
        if (candidate / CLUSTER_TEMPLATES).is_dir():
            return candidate.resolve()
    raise TemplateError("the packaged templates are missing from this tenantctl installation")


def template_search_path(template_dirs: Sequence[Path] | None, *, cwd: Path | None = None) -> tuple[Path, ...]:
    """Override directories followed by the packaged templates, all absolute, duplicates removed."""
    packaged = packaged_templates_dir().resolve()
    if template_dirs is None:
        local = (cwd or Path.cwd()) / "templates"
        overrides: list[Path] = [local] if local.is_dir() else []
    else:
        overrides = [Path(d) for d in template_dirs]
        for directory in overrides:
            if not directory.is_dir():
                raise TemplateError(f"template directory not found: {directory}")
    search: list[Path] = []
    for directory in [*(d.resolve() for d in overrides), packaged]:
        if directory not in search:
            search.append(directory)
    return tuple(search)


@dataclass(frozen=True)
class Templates:
    """A compiled template set: which templates exist for each stack kind, and where each came from."""

    environment: jinja2.Environment
    search_path: tuple[Path, ...]
    cluster: tuple[str, ...]  # template names under cluster/, sorted
    tenant: tuple[str, ...]  # template names under tenant/, sorted
    origins: dict[str, Path]  # template name -> the directory it was loaded from

    def get(self, name: str) -> jinja2.Template:
        try:
            return self.environment.get_template(name)
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(
                f"{self.origins.get(name, Path('?')) / name}:{error.lineno}: template syntax error: "
                f"{error.message}"
            ) from error

    def overridden(self) -> tuple[str, ...]:
        """Template names that come from an override directory rather than the packaged set."""
        packaged = self.search_path[-1]
        return tuple(sorted(name for name, origin in self.origins.items() if origin != packaged))


@functools.lru_cache(maxsize=8)
def load_templates(search_path: tuple[Path, ...]) -> Templates:
    """Build (once per search path) the environment and index the stack templates it offers."""
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(d)) for d in search_path])
    environment = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
    )
    environment.filters.update(
        {
            "q": hcl.string,
            "esc": hcl.escape,
            "num": hcl.number,
            "lit": hcl.literal,
            "key": hcl.key,
            "list": hcl.string_list,
            "object_lines": hcl.object_lines,
        }
    )
    origins: dict[str, Path] = {}
    for directory in search_path:
        for path in sorted(directory.rglob(f"*{TEMPLATE_SUFFIX}")):
            name = path.relative_to(directory).as_posix()
            origins.setdefault(name, directory)

    def stack_templates(kind: str) -> tuple[str, ...]:
        # Only direct children ending in .tf.j2 produce files; anything else (macros) is included.
        return tuple(
            sorted(
                name for name in origins
                if name.startswith(f"{kind}/") and name.count("/") == 1
                and name.endswith(f".tf{TEMPLATE_SUFFIX}")
            )
        )

    templates = Templates(
        environment=environment, search_path=search_path,
        cluster=stack_templates(CLUSTER_TEMPLATES), tenant=stack_templates(TENANT_TEMPLATES),
        origins=origins,
    )
    for name in (*templates.cluster, *templates.tenant):
        templates.get(name)  # compile every stack template now: syntax errors surface before any work
    return templates


def output_name(template_name: str) -> str:
    """``tenant/iam.tf.j2`` -> ``iam.tf``."""
    return template_name.rsplit("/", 1)[-1].removesuffix(TEMPLATE_SUFFIX)
