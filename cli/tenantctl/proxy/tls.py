"""TLS contexts: the proxy's server certificate (client leg) and per-cluster client contexts."""

from __future__ import annotations

import ssl
from pathlib import Path

from tenantctl.errors import InputError
from tenantctl.routing.document import ClusterTls


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as error:
        raise InputError(f"cannot load TLS certificate {cert_file} / key {key_file}: {error}") from None
    return context


class BackendContexts:
    """One cached client context per (mode, CA bundle); built lazily when a cluster first needs it."""

    def __init__(self) -> None:
        self._cache: dict[ClusterTls, ssl.SSLContext] = {}

    def get(self, tls: ClusterTls) -> ssl.SSLContext:
        context = self._cache.get(tls)
        if context is None:
            context = self._cache[tls] = backend_context(tls)
        return context


def backend_context(tls: ClusterTls) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.mode == "verify-full":
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if tls.ca_file:
            context.load_verify_locations(cafile=tls.ca_file)
        else:
            context.load_default_certs()
    else:  # "require": encrypted, not authenticated (libpq's sslmode=require)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
