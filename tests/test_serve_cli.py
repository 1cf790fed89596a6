"""`jetfleet serve` keeps the API token out of argv and out of sight (issue 12, finding 9)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from deployments import cli


def test_token_in_argv_is_refused_with_what_to_do_instead():
    result = CliRunner().invoke(cli.app, ["serve", "--token", "s3cret"])
    assert result.exit_code == 2 and "--token-file" in result.output and "ps" in result.output


def test_the_token_file_is_made_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("JETFLEET_HOME", str(tmp_path))
    token, path = cli._api_token(None, None)
    assert path == tmp_path / "api_token" and (os.stat(path).st_mode & 0o777) == 0o600
    assert path.read_text() == token and len(token) == 64
    assert cli._api_token(None, None) == (token, path)  # a restart keeps the clients' token


def test_a_token_file_others_can_read_is_refused(tmp_path):
    from jetfleet.errors import ConfigError

    path = tmp_path / "token"
    path.write_text("mine")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        cli._api_token(path, None)


def test_the_token_is_printed_once(capsys, tmp_path):
    service = SimpleNamespace(url="http://127.0.0.1:8000", token="t0k3n-abc")
    cli._print_access(service, tmp_path / "api_token")
    out = capsys.readouterr().out
    assert out.count("t0k3n-abc") == 1 and f"$(cat {tmp_path / 'api_token'})" in out
