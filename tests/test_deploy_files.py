"""The deployment files agree with the code: variables exist, examples validate, nothing secret is committed.

These read the files as text, each check targeting one line shape; tests/test_deploy_validate.py
checks them against their schemas and with nginx itself.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path

import pytest

from broker.cli import build_parser
from broker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OPERATIONS = ROOT / "docs" / "operations.md"
K8S = DEPLOY / "k8s"

DEPLOY_FILES = sorted(p for p in DEPLOY.rglob("*") if p.is_file())
VARIABLE = re.compile(r"\b(TELEROOM_[A-Z0-9_]+|DATABASE_URL)\b")
# Our token shapes (credentials.py): a prefix and a url-safe random tail.
TOKEN = re.compile(r"\btr[kafm]_[A-Za-z0-9_-]{16,}")
PLACEHOLDER = re.compile(r"<[^<>]+>")


def settings_variables() -> set[str]:
    source = (ROOT / "broker" / "settings.py").read_text()
    return set(re.findall(r'"(TELEROOM_[A-Z0-9_]+|DATABASE_URL)"', source))


def filled(value: str) -> str:
    """Replace every `<placeholder>` with a plausible value of its kind."""
    return PLACEHOLDER.sub(lambda m: "x" * 32, value)


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def k8s_documents(name: str) -> list[str]:
    return [doc for doc in (K8S / name).read_text().split("\n---\n") if "kind:" in doc]


def nginx_blocks(conf: str, header: str) -> list[str]:
    """The bodies of every `header {` block, braces matched."""
    bodies = []
    for match in re.finditer(re.escape(header) + r" \{", conf):
        depth, start = 1, match.end()
        for i in range(start, len(conf)):
            depth += {"{": 1, "}": -1}.get(conf[i], 0)
            if depth == 0:
                bodies.append(conf[start:i])
                break
    assert bodies, f"no block {header}"
    return bodies


def nginx_block(conf: str, header: str) -> str:
    (body,) = nginx_blocks(conf, header)
    return body


def test_deploy_files_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DEPLOY_FILES}
    for expected in (
        "deploy/Dockerfile",
        "deploy/compose.yaml",
        "deploy/nginx.conf",
        "deploy/turnserver.conf",
        "deploy/k8s/deployment.yaml",
        "deploy/k8s/service.yaml",
        "deploy/k8s/ingress.yaml",
        "deploy/k8s/secret.example.yaml",
        "deploy/k8s/migrate-job.yaml",
    ):
        assert expected in names
    assert (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("path", [*DEPLOY_FILES, OPERATIONS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_variable_mentioned_is_one_settings_reads(path: Path) -> None:
    mentioned = set(VARIABLE.findall(path.read_text()))
    unknown = mentioned - settings_variables()
    assert not unknown, f"{path.name} mentions variables broker/settings.py does not read: {sorted(unknown)}"


@pytest.mark.parametrize("path", [*DEPLOY_FILES, OPERATIONS, ROOT / ".dockerignore"], ids=lambda p: p.name)
def test_no_real_looking_secret_is_committed(path: Path) -> None:
    text = path.read_text()
    assert not TOKEN.search(text), "a token-shaped string; use a <placeholder>"
    assert "-----BEGIN" not in text, "a PEM key or certificate"
    assert not re.search(r"^\s*static-auth-secret\s*=", text, re.M), "the TURN secret belongs in the environment"
    assert not re.search(r"postgres(ql)?://[^:/\s]+:[^@<\s]+@", text), "a database URL with a literal password"


def test_secret_values_in_examples_are_placeholders() -> None:
    secrets = {"TELEROOM_ADMIN_TOKEN", "TELEROOM_TURN_SECRET", "POSTGRES_PASSWORD"}
    env = env_file(DEPLOY / "teleroom.env.example")
    assert secrets <= env.keys()
    for key in secrets:
        assert PLACEHOLDER.search(env[key]), key
    secret_doc = (K8S / "secret.example.yaml").read_text()
    for key in ("TELEROOM_ADMIN_TOKEN", "TELEROOM_TURN_SECRET"):
        line = re.search(rf"^\s+{key}:\s*(.+)$", secret_doc, re.M)
        assert line and PLACEHOLDER.search(line.group(1)), key


def test_compose_takes_secrets_only_from_the_env_file() -> None:
    compose = (DEPLOY / "compose.yaml").read_text()
    for key in ("TELEROOM_ADMIN_TOKEN", "TELEROOM_TURN_SECRET", "POSTGRES_PASSWORD", "DATABASE_URL"):
        assert not re.search(rf"^\s*-?\s*{key}\s*[:=]", compose, re.M), f"{key} is given a value in compose.yaml"
    assert compose.count("env_file: teleroom.env") >= 3  # nodes (shared anchor), postgres, coturn
    assert '--static-auth-secret="$$TELEROOM_TURN_SECRET"' in compose
    assert "teleroom.env" in (DEPLOY / ".gitignore").read_text().split()
    assert "*.env" in (ROOT / ".dockerignore").read_text().split()


def test_example_configurations_are_accepted_by_settings() -> None:
    env = {k: filled(v) for k, v in env_file(DEPLOY / "teleroom.env.example").items()}
    settings = Settings.from_env(env)
    assert settings.turn_secret and settings.turn_urls and settings.database_url
    assert settings.origin == "https://teleroom.example.org"

    pairs = re.findall(r'^\s+([A-Z_]+):\s*"([^"]*)"$', (K8S / "secret.example.yaml").read_text(), re.M)
    settings = Settings.from_env({k: filled(v) for k, v in pairs})
    assert settings.turn_secret and len(settings.turn_urls) == 2


def test_image_runs_commands_the_cli_has() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["teleroom"]' in dockerfile
    assert 'CMD ["serve", "--host", "0.0.0.0"]' in dockerfile
    parser = build_parser()
    assert parser.parse_args(["serve", "--host", "0.0.0.0"]).host == "0.0.0.0"
    assert 'args: ["migrate"]' in (K8S / "migrate-job.yaml").read_text()
    assert parser.parse_args(["migrate"]).command == "migrate"
    assert 'args: ["serve", "--host", "0.0.0.0"]' in (K8S / "deployment.yaml").read_text()


def test_image_copies_every_package_pyproject_ships_and_runs_unprivileged() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.M))
    assert copied == packages
    assert re.search(r"^COPY pyproject\.toml README\.md", dockerfile, re.M)
    user = re.search(r"^USER (\S+)", dockerfile, re.M)
    assert user and not user.group(1).startswith(("root", "0:", "0 ")) and user.group(1) != "0"
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".teleroom", ".git", "node_modules"} <= set(ignored)


def test_nginx_hashes_only_ws_on_the_room_argument() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    ws = nginx_block(conf, "location = /ws")
    upstream = re.search(r"proxy_pass http://(\w+);", ws)
    assert upstream
    ws_upstream = nginx_block(conf, f"upstream {upstream.group(1)}")
    assert re.search(r"^\s*hash \$arg_room consistent;", ws_upstream, re.M)
    (tls_server,) = [body for body in nginx_blocks(conf, "server") if "listen 443 ssl;" in body]
    default = re.search(r"proxy_pass http://(\w+);", nginx_block(tls_server, "location /"))
    assert default and default.group(1) != upstream.group(1)
    assert "hash" not in nginx_block(conf, f"upstream {default.group(1)}")
    timeout = re.search(r"proxy_read_timeout (\d+)s;", ws)
    assert timeout and int(timeout.group(1)) > 30  # several 10-15 s heartbeats
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert "client_max_body_size 64k;" in conf
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert f"proxy_set_header {header} " in conf


def test_nginx_logs_no_query_strings_and_no_feed_paths() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    formats = dict(re.findall(r"log_format (\w+) ((?:'[^']*'\s*)+);", conf))
    assert formats
    for name, fmt in formats.items():
        for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string", "$remote_addr"):
            assert leaky not in fmt, f"log_format {name} contains {leaky}"
    calendar = nginx_block(conf, "location /calendar/")
    used = re.search(r"access_log \S+ (\w+);", calendar)
    assert used, "the feed location must choose its own log format (or turn logging off)"
    assert "$uri" not in formats[used.group(1)]
    assert re.search(r"error_log \S+ crit;", calendar)
    assert re.search(r"^    access_log \S+ teleroom;", nginx_block(conf, "http"), re.M)


def test_ingress_hashes_ws_on_room_with_its_own_service_and_hides_feed_paths() -> None:
    docs = k8s_documents("ingress.yaml")
    ws = [d for d in docs if re.search(r"path: /ws$", d, re.M)]
    assert len(ws) == 1
    assert 'nginx.ingress.kubernetes.io/upstream-hash-by: "$arg_room"' in ws[0]
    assert re.search(r'proxy-read-timeout: "(\d+)"', ws[0])
    ws_service = re.search(r"service:\s+name: (\S+)", ws[0])
    assert ws_service
    for other in docs:
        if other is not ws[0]:
            assert "upstream-hash-by" not in other
            assert f"name: {ws_service.group(1)}\n" not in other
    calendar = [d for d in docs if "path: /calendar/" in d]
    assert len(calendar) == 1 and 'enable-access-log: "false"' in calendar[0]
    services = "\n".join(k8s_documents("service.yaml"))
    assert f"name: {ws_service.group(1)}\n" in services


def test_deployment_probes_and_secret() -> None:
    deployment = (K8S / "deployment.yaml").read_text()
    assert re.search(r"^\s+replicas: 2$", deployment, re.M)
    assert re.search(r"readinessProbe:\s+httpGet:\s+path: /readyz", deployment)
    assert re.search(r"livenessProbe:\s+httpGet:\s+path: /healthz", deployment)
    assert re.search(r"secretRef:\s+name: teleroom$", deployment, re.M)
    assert "runAsNonRoot: true" in deployment


def test_turnserver_uses_the_shared_secret_scheme_and_refuses_private_peers() -> None:
    conf = (DEPLOY / "turnserver.conf").read_text()
    lines = [line.strip() for line in conf.splitlines() if line.strip() and not line.startswith("#")]
    assert "use-auth-secret" in lines and "fingerprint" in lines
    assert not any(line.startswith(("lt-cred-mech", "user=", "allow-loopback-peers")) for line in lines)
    assert any(line.startswith("realm=") for line in lines)
    denied = []
    for line in lines:
        if line.startswith("denied-peer-ip="):
            low, _, high = line.split("=", 1)[1].partition("-")
            denied.append((ipaddress.ip_address(low), ipaddress.ip_address(high or low)))
    probes = [
        "10.1.2.3",
        "172.20.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
    ]
    for probe in map(ipaddress.ip_address, probes):
        assert any(low.version == probe.version and low <= probe <= high for low, high in denied), str(probe)
    assert not any(low <= ipaddress.ip_address("8.8.8.8") <= high for low, high in denied if low.version == 4)


def test_operations_doc_covers_what_an_operator_needs() -> None:
    doc = OPERATIONS.read_text()
    for needle in (
        "make run",
        ".teleroom/",
        "admin-token",
        "btree_gist",
        "pg_dump",
        "teleroom keys rotate",
        "teleroom migrate",
        "advisory lock",
        "forward-only",
        "-f deploy/Dockerfile",
    ):
        assert needle in doc, needle
