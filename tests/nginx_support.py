"""deploy/nginx.conf made runnable on loopback: the shipped file, its host-specific parts replaced.

The shipped file is what a clinic deploys (compose service names as upstreams, certificates under
/etc/nginx/tls, logs under /var/log/nginx). A copy for a test points the upstreams at local ports,
the certificate at one generated here, logs and state into a temporary directory, and the listeners
at free ports; everything else (routing, hashing, headers, timeouts, log formats) is the shipped file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SHIPPED = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
UPSTREAM_SERVER = re.compile(r"^(\s*server )(teleroom-\d+):8080\b", re.M)


def upstream_names(conf: str | None = None) -> list[str]:
    """The node host names the shipped upstream blocks list (compose service names), in order."""
    return list(dict.fromkeys(m.group(2) for m in UPSTREAM_SERVER.finditer(conf or SHIPPED.read_text())))


def self_signed(directory: Path, host: str = "teleroom.example.org") -> tuple[Path, Path]:
    """A P-256 key and a self-signed certificate for `host`, as fullchain.pem and privkey.pem."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    chain, private = directory / "fullchain.pem", directory / "privkey.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private.chmod(0o600)
    return chain, private


def render(
    directory: Path,
    upstreams: Mapping[str, str],
    *,
    http_port: int = 80,
    https_port: int = 443,
    conf: str | None = None,
) -> Path:
    """Write a loopback copy of the shipped configuration into `directory`; returns its path.

    `upstreams` maps each shipped node name (`teleroom-1`...) to `host:port`; listeners move to
    127.0.0.1 on the given ports (IPv6 listeners dropped), and every file nginx writes or reads
    other than the configuration lives under `directory`."""
    text = conf if conf is not None else SHIPPED.read_text()
    missing = set(upstream_names(text)) - set(upstreams)
    assert not missing, f"no address for {sorted(missing)}"
    text = UPSTREAM_SERVER.sub(lambda m: f"{m.group(1)}{upstreams[m.group(2)]}", text)
    tls, logs = directory / "tls", directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if not (tls / "fullchain.pem").exists():
        self_signed(tls)
    replacements = {
        "/etc/nginx/tls/": f"{tls}/",
        "/var/log/nginx/": f"{logs}/",
        "/var/www/acme": str(directory / "acme"),
        "pid /tmp/nginx.pid;": f"pid {directory / 'nginx.pid'};",
    }
    for old, new in replacements.items():
        assert old in text, f"the shipped configuration no longer has {old!r}; update tests/nginx_support.py"
        text = text.replace(old, new)
    text = re.sub(r"^\s*listen \[::\]:\d+.*\n", "", text, flags=re.M)
    text = re.sub(r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{http_port};", text, flags=re.M)
    text = re.sub(r"^(\s*)listen 443 ssl;", rf"\1listen 127.0.0.1:{https_port} ssl;", text, flags=re.M)
    # Temporary files nginx keeps for proxied bodies, under the directory too.
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp + "\n", 1)
    rendered = directory / "nginx.conf"
    rendered.write_text(text)
    return rendered
