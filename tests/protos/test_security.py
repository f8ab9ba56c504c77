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
