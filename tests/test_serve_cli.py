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


def test_a_cluster_of_its_own_takes_the_loopback_as_its_node_address(monkeypatch):
    """Ray on Linux swaps 127.0.0.1 for the machine's address (and binds agents there) unless told not to."""
    ray_constants = pytest.importorskip("ray._private.ray_constants")
    from ray._private import services

    from cluster.local import LOOPBACK_ENV, keep_on_loopback

    if pytest.importorskip("ray").is_initialized():
        pytest.skip("this process is already in a Ray cluster: its node address is fixed")

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)  # restored after
    for key in LOOPBACK_ENV:
        monkeypatch.delenv(key, raising=False)
    keep_on_loopback()
    assert services.get_node_ip_address() == "127.0.0.1"
    assert all(os.environ[k] == v for k, v in LOOPBACK_ENV.items())  # the processes Ray starts see it too
