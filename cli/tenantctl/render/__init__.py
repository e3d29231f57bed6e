"""Rendering Terraform stacks from the model with Jinja2.

``render_stacks(model, out_dir)`` writes ``out_dir/cluster/*.tf`` (every Aurora cluster, one root
module) and ``out_dir/tenants/<tenant>/*.tf`` (one small root module per tenant), rewriting only the
files whose bytes change. ``render_files`` is the pure form (relative path -> bytes) and
``check_stacks`` compares a directory with it (``tenantctl render --check``).

Templates and overriding them
-----------------------------
Templates are Jinja2 files ending in ``.j2``: every ``cluster/<name>.tf.j2`` becomes
``cluster/<name>.tf`` and every ``tenant/<name>.tf.j2`` becomes ``tenants/<tenant>/<name>.tf``; a
template that renders to whitespace only produces no file. Shared macros live in
``common/macros.j2``. The packaged set ships with tenantctl (the repository's ``templates/``).

To customise, create a ``templates/`` folder in the current working directory (or pass explicit
directories: ``template_dirs=[...]``, the CLI's ``--templates DIR``) holding files with the same
relative names: each one replaces the packaged file of that name, file by file; new
``tenant/<name>.tf.j2`` files add files to every tenant stack. Explicit directories replace the
``./templates`` default. The result lists the templates taken from an override directory.

Templates see plain precomputed values (``tenantctl.render.context``) and the frozen model objects;
undefined variables are errors (``StrictUndefined``). Values reach HCL only through the filters
``q`` (quoted string), ``esc`` (escaped string body), ``num``, ``lit``, ``key``, ``list`` and
``object_lines``, and the output is normalised to ``terraform fmt`` layout, so the same model always
gives the same bytes.
"""

from tenantctl.render.drift import StaleFile, check_stacks
from tenantctl.render.environment import TemplateError
from tenantctl.render.files import render_files
from tenantctl.render.writer import RenderResult, render_stacks

__all__ = ["RenderResult", "StaleFile", "TemplateError", "check_stacks", "render_files", "render_stacks"]
