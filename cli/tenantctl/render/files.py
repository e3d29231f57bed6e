"""Pure rendering: model in, ``{relative path: file bytes}`` out. No file system writes."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import jinja2
import jinja2.meta
from jinja2 import nodes

from tenantctl.errors import InputError
from tenantctl.model.types import Model
from tenantctl.render import hcl
from tenantctl.render.context import TenantContexts, cluster_context
from tenantctl.render.environment import (
    TemplateError,
    Templates,
    load_templates,
    output_name,
    template_search_path,
)

CLUSTER_DIR = "cluster"
TENANTS_DIR = "tenants"
_SAFE_DIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def render_files(model: Model, *, template_dirs: Sequence[Path] | None = None) -> dict[str, bytes]:
    """Every stack file for ``model``: ``cluster/<file>.tf`` and ``tenants/<tenant>/<file>.tf``.

    Deterministic: the same model and templates give identical bytes. A template that renders to
    nothing but whitespace produces no file (e.g. ``postgres.tf`` with the native engine).
    """
    templates = load_templates(template_search_path(template_dirs))
    return render_with(templates, model)


def render_with(templates: Templates, model: Model) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    renderer = _Renderer(templates)
    context = cluster_context(model)
    for name in templates.cluster:
        _add(files, f"{CLUSTER_DIR}/{output_name(name)}", renderer.render(name, context, "the cluster stack"))
    contexts = TenantContexts(model)
    for tenant in model.tenants:
        directory = tenant_directory(tenant.name)
        context = contexts.build(tenant)
        for name in templates.tenant:
            content = renderer.render_cached(name, context, contexts.shared_names, f"tenant {tenant.name!r}")
            _add(files, f"{directory}/{output_name(name)}", content)
    return files


def tenant_directory(tenant: str) -> str:
    """``tenants/<tenant>``; refuses names that could escape the stacks directory."""
    if not _SAFE_DIR_NAME.match(tenant) or ".." in tenant:
        raise InputError(f"tenant name {tenant!r} cannot be used as a directory name")
    return f"{TENANTS_DIR}/{tenant}"


def _add(files: dict[str, bytes], path: str, content: bytes | None) -> None:
    if content is not None:
        files[path] = content


class _Renderer:
    """Renders templates to final bytes; memoises tenant files that come out the same for many tenants.

    A tenant template's output depends only on the context names it references. Those that vary
    per tenant form the cache key, so e.g. ``terraform.tf`` (which names nothing tenant-specific)
    renders once per model instead of once per tenant. Templates that include others with the
    caller's context are never cached (their variables cannot be listed).

    Packaged templates are written in ``terraform fmt`` layout already (a test holds them to it);
    files from override templates are passed through ``hcl.canonical_layout``.
    """

    def __init__(self, templates: Templates) -> None:
        self.templates = templates
        self._names: dict[str, frozenset[str] | None] = {}
        self._cache: dict[Hashable, bytes | None] = {}
        self._packaged = templates.search_path[-1]

    def render(self, name: str, context: Mapping[str, object], subject: str) -> bytes | None:
        text = _render(self.templates, name, context, subject)
        if not text.strip():
            return None
        if self.templates.origins.get(name) != self._packaged:
            text = hcl.canonical_layout(text)
        return text.encode("utf-8")

    def render_cached(
        self, name: str, context: Mapping[str, object], shared: frozenset[str], subject: str
    ) -> bytes | None:
        names = self._referenced(name)
        if names is None:
            return self.render(name, context, subject)
        key = (name, *(context[n] for n in sorted(names - shared) if n in context))
        try:
            return self._cache[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value (e.g. a dict of tags): render every time
            return self.render(name, context, subject)
        content = self._cache[key] = self.render(name, context, subject)
        return content

    def _referenced(self, name: str) -> frozenset[str] | None:
        if name not in self._names:
            environment = self.templates.environment
            assert environment.loader is not None
            source, _, _ = environment.loader.get_source(environment, name)
            tree = environment.parse(source)
            shares_context = any(
                isinstance(node, nodes.Include | nodes.Extends)
                or (isinstance(node, nodes.Import | nodes.FromImport) and node.with_context)
                for node in tree.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport))
            )
            self._names[name] = None if shares_context else frozenset(jinja2.meta.find_undeclared_variables(tree))
        return self._names[name]


def _render(templates: Templates, name: str, context: Mapping[str, object], subject: str) -> str:
    try:
        return templates.get(name).render(context)
    except TemplateError:
        raise
    except jinja2.TemplateError as error:
        origin = templates.origins.get(name)
        where = f"{origin / name}" if origin else name
        raise TemplateError(f"{where}: {error} (while rendering {subject})") from error
    except (TypeError, ValueError) as error:
        raise TemplateError(f"{name}: {error} (while rendering {subject})") from error
