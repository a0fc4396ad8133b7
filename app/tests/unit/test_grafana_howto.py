"""The local Grafana how-to (dashboards/README.md) and its provisioning: no host networking, no
default credentials, ports published on the loopback interface only, and the SQL datasource
as the read-only role `cryptopred_grafana` with its password from the environment."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "dashboards" / "README.md"
LOCAL_DATASOURCES = ROOT / "dashboards" / "provisioning" / "datasources" / "cryptopred.yaml"


def _shell_blocks(markdown: str) -> list[str]:
    """The ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.S)
    return [re.sub(r"\\\n\s*", " ", b) for b in blocks]


def howto_problems(markdown: str) -> list[str]:
    """What in a how-to's commands exposes Grafana or uses default credentials."""
    problems = []
    commands = [line for block in _shell_blocks(markdown) for line in block.splitlines()]
    for line in commands:
        if re.search(r"--network[= ]host|--net[= ]host", line):
            problems.append(f"host networking: {line.strip()}")
        for published in re.findall(r"(?:-p|--publish)[= ](\S+)", line):
            if not published.startswith("127.0.0.1:"):
                problems.append(f"published beyond the loopback interface: {published}")
        prometheus = "prometheus " in line and "--config.file" in line
        if prometheus and "--web.listen-address=127.0.0.1:" not in line:
            problems.append(f"Prometheus listens on every interface: {line.strip()}")
    docker_runs = [line for line in commands if "docker run" in line and "grafana/grafana" in line]
    if not docker_runs:
        problems.append("no `docker run ... grafana/grafana` command")
    for line in docker_runs:
        if "GF_SECURITY_ADMIN_PASSWORD" not in line:
            problems.append("Grafana starts with its default admin password")
    if re.search(r"admin\s*/\s*admin", markdown):
        problems.append("the how-to mentions admin/admin")
    return problems


def test_the_local_howto_exposes_nothing_and_uses_no_default_credentials() -> None:
    problems = howto_problems(README.read_text())
    assert not problems, problems
    text = README.read_text()
    assert "openssl rand" in text  # the admin password is generated


def test_the_howto_check_catches_the_exposed_setup() -> None:
    exposed = (
        "```bash\nprometheus --config.file=dashboards/prometheus.yml &\n"
        "docker run --rm --network host \\\n  -p 3000:3000 grafana/grafana:11.6.0\n```\n"
        "then http://127.0.0.1:3000 (admin/admin)\n"
    )
    assert len(howto_problems(exposed)) == 5


def test_the_local_sql_datasource_is_the_read_only_role() -> None:
    datasources = yaml.safe_load(LOCAL_DATASOURCES.read_text())["datasources"]
    (sql_source,) = [d for d in datasources if d["uid"] == "risingwave"]
    assert sql_source["user"] == "cryptopred_grafana"
    assert sql_source["secureJsonData"] == {"password": "$GRAFANA_DB_PASSWORD"}
