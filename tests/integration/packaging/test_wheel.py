"""`pip install .` builds a real wheel, and that wheel carries every packaged template."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_wheel_carries_the_templates_and_the_native_relay(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = tmp_path.glob("tenantctl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {str(p.relative_to(REPO)) for p in (REPO / "templates").rglob("*.j2")}
    assert templates, "no templates in the repository?"
    assert {f"tenantctl/{t}" for t in templates} <= names
    assert "tenantctl/cli/main.py" in names and "tenantctl/py.typed" in names
    # The native relay is compiled into the wheel (a C compiler is part of the supported build setup here).
    assert any(n.startswith("tenantctl/proxy/_relay.") and n.endswith(".so") for n in names), sorted(names)
    assert "tenantctl/proxy/_relay.pyi" in names
