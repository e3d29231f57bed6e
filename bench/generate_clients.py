"""Generate a large, valid clients file (HCL or JSON) for benchmarks and scale tests.

    python bench/generate_clients.py 10000 /tmp/clients-10k.tfvars
    python bench/generate_clients.py 10000 /tmp/clients-10k.tfvars.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PUBLIC_FIRST_OCTETS = (3, 13, 18, 34, 35, 44, 52, 54)  # globally routable: valid for IAM-auth tenants


def tenant(i: int) -> dict[str, object]:
    return {
        "name": f"tenant{i:05d}",
        "databases": {"app": True, "reports": i % 3 == 0, "archive": False},
        "allowed_ips": [f"{PUBLIC_FIRST_OCTETS[i % 8]}.{(i // 250) % 250}.{i % 250}.{i % 7 + 1}/32", "34.120.0.0/24"],
        "rds_iam_auth": i % 2 == 0,
        "tier": ("basic", "standard", "premium")[i % 3],
        "tags": {"team": f"team{i % 17}"},
    }


def clusters(count: int) -> dict[str, dict[str, object]]:
    per_cluster = max(1, -(-count // 8) * 2)
    return {f"shared-{n:02d}": {"min_acu": 0.5, "max_acu": 64, "max_tenants": per_cluster} for n in range(1, 9)}


def hcl(count: int) -> str:
    lines = ['settings = {\n  region = "eu-west-1"\n  target = "aws"\n}\n', "clusters = {"]
    for name, spec in clusters(count).items():
        lines.append(f"  {name} = {{ min_acu = {spec['min_acu']}, max_acu = {spec['max_acu']}, "
                     f"max_tenants = {spec['max_tenants']} }}")
    lines.append("}\n\nclients = [")
    for i in range(count):
        t = tenant(i)
        dbs = ", ".join(f"{k} = {str(v).lower()}" for k, v in t["databases"].items())  # type: ignore[attr-defined]
        ips = ", ".join(json.dumps(ip) for ip in t["allowed_ips"])  # type: ignore[attr-defined]
        lines.append(
            "  {\n"
            f'    name         = "{t["name"]}"\n'
            f"    databases    = {{ {dbs} }}\n"
            f"    allowed_ips  = [{ips}]\n"
            f"    rds_iam_auth = {str(t['rds_iam_auth']).lower()}\n"
            f'    tier         = "{t["tier"]}"\n'
            f'    tags         = {{ team = "{t["tags"]["team"]}" }}\n'  # type: ignore[index]
            "  },"
        )
    lines.append("]\n")
    return "\n".join(lines)


def as_json(count: int) -> str:
    doc = {"settings": {"region": "eu-west-1", "target": "aws"}, "clusters": clusters(count),
           "clients": [tenant(i) for i in range(count)]}
    return json.dumps(doc, indent=2) + "\n"


def main() -> None:
    count, out = int(sys.argv[1]), Path(sys.argv[2])
    out.write_text(as_json(count) if out.name.endswith(".json") else hcl(count))


if __name__ == "__main__":
    main()
