"""`flights-app dev-secrets` (`make secrets`): every file of the deployment's secrets, owner-only but
the public certificate, kept when it exists, the TLS pair made and kept together, nothing printed.
(The files at work: tests/test_deploy.py runs the compose cluster on them.)"""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flights_app import dev_secrets
from flights_app.cli import main

CLI = [sys.executable, "-m", "flights_app.cli", "dev-secrets", "--out"]


def test_the_set_is_made_once_and_kept(tmp_path, capsys):
    out = tmp_path / "secrets"
    run = subprocess.run([*CLI, str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    names = {p.name for p in out.iterdir()}
    assert names == {*dev_secrets.FILES, dev_secrets.CA_FILE, dev_secrets.BROKER_FILE}
    for path in out.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0 or path.name == dev_secrets.CA_FILE, (path.name, oct(mode))
        if path.name != dev_secrets.CA_FILE:
            assert path.read_text().strip() not in run.stdout, path.name  # never printed
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    main(["dev-secrets", "--out", str(out)])
    assert capsys.readouterr().out.count("kept") == len(before)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_brokers_certificate_is_signed_by_the_authority_for_the_brokers_names(tmp_path):
    ca_pem, broker_pem = dev_secrets.tls_pair()
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "broker.pem").write_text(broker_pem)
    assert broker_pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted: Kafka's PEM keystore
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "broker.pem")  # the key and its certificate belong together
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(broker_pem.split("-----END PRIVATE KEY-----")[1].encode())
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == set(dev_secrets.BROKER_NAMES)
    assert cert.subject.rfc4514_string() == f"CN={dev_secrets.BROKER_SUBJECT}"  # the brokers' super user


def test_half_a_pair_is_refused_with_one_line(tmp_path, capsys):
    out = tmp_path / "secrets"
    dev_secrets.write(out)
    (out / dev_secrets.CA_FILE).unlink()
    with pytest.raises(SystemExit) as stopped:  # the CLI's one line, no traceback
        main(["dev-secrets", "--out", str(out)])
    err = capsys.readouterr().err
    assert stopped.value.code != 0 and err.count("\n") == 1, err
    assert "made as a pair" in err and "kafka-broker.pem" in err, err
    assert not (out / dev_secrets.CA_FILE).exists()  # nothing half-made
    assert Path(out / dev_secrets.BROKER_FILE).exists()
