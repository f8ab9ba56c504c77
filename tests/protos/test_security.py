"""The command line's side of the learner's security rules (the service's side is in test_service.py).

`stackrl learner` must refuse a non-loopback bind without a token before it builds anything, with an
error that says what to do; with a token (flag or STACKRL_TOKEN) that check passes.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from stackrl.deploy.cli import main


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "learner.example.org"])
def test_cli_learner_refuses_an_open_bind_without_a_token(host, tmp_path, monkeypatch):
    monkeypatch.delenv("STACKRL_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["learner", "stag_hunt", "--host", host, "--port", "0", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert f"server.host='{host}' is not a loopback address and no token is set" in res.output
    assert "STACKRL_TOKEN" in res.output and "learner listening" not in res.output


def test_cli_learner_with_an_empty_token_env_is_still_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("STACKRL_TOKEN", "")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["learner", "stag_hunt", "--host", "0.0.0.0", "--no-progress"])
    assert res.exit_code == 2 and "no token is set" in res.output, res.output


def test_cli_learner_refuses_a_short_token_off_loopback(tmp_path, monkeypatch):
    """Issue 13: a one-character token was accepted off loopback (guessed in a few dozen calls)."""
    monkeypatch.setenv("STACKRL_TOKEN", "x")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["learner", "stag_hunt", "--host", "0.0.0.0", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "server.token: 1 characters is too short off loopback (at least 16)" in res.output
    assert "Traceback" not in res.output


def test_cli_token_file_keeps_the_token_out_of_ps_and_argv_warns(tmp_path, monkeypatch):
    """Issue 13: `--token` shows in `ps`. --token-file reads it from a file (and is refused if empty);
    a token on the command line still works but warns."""
    monkeypatch.delenv("STACKRL_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "short").write_text("abc\n")
    res = CliRunner().invoke(
        main, ["learner", "stag_hunt", "--host", "0.0.0.0", "--token-file", "short", "--no-progress"]
    )
    assert res.exit_code == 2 and "3 characters is too short" in res.output, res.output
    (tmp_path / "empty").write_text("")
    res = CliRunner().invoke(main, ["learner", "stag_hunt", "--token-file", "empty", "--no-progress"])
    assert res.exit_code == 2 and "--token-file: empty is empty" in res.output, res.output
    res = CliRunner().invoke(main, ["learner", "stag_hunt", "--token-file", "missing", "--no-progress"])
    assert res.exit_code == 2 and "--token-file: cannot read missing" in res.output, res.output
    res = CliRunner().invoke(
        main, ["learner", "stag_hunt", "--host", "0.0.0.0", "--token", "x", "--no-progress"]
    )
    assert "--token is visible to every user in `ps`" in res.output and "too short" in res.output


def test_cli_learner_names_a_bad_tls_key_instead_of_failed_to_bind(tmp_path, monkeypatch):
    """Issue 13, item 6: a key file that is not a PEM key was reported as 'Failed to bind'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cert.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "key.pem").write_text("garbage\n")
    res = CliRunner().invoke(
        main, ["learner", "stag_hunt", "--tls-cert", "cert.pem", "--tls-key", "key.pem", "--no-progress"]
    )
    assert res.exit_code == 2, res.output
    assert "server.tls_key: key.pem is not a PEM private key matching the certificate cert.pem" in res.output
    assert "Failed to bind" not in res.output and "Traceback" not in res.output
