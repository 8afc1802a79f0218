"""``daemon.toml``: the settings of a daemon started with no options (by the native host, systemd
or launchd), and their precedence under the command line and the environment."""

from __future__ import annotations

import pytest

from lowkey.service import load_settings, port_from_env
from lowkey_daemon import cli


def test_no_file_means_no_settings(tmp_path):
    assert load_settings(tmp_path) == {}


def test_settings_are_read_and_typed(tmp_path):
    (tmp_path / "daemon.toml").write_text(
        'preset = "default"\nmodels = ["sface"]\ndevices = ["cpu"]\njob_timeout = 60\n'
        "warm_up = false\nport = 8123\nbatch = 4\n")
    assert load_settings(tmp_path) == {"preset": "default", "models": ["sface"],
                                       "devices": ["cpu"], "job_timeout": 60.0,
                                       "warm_up": False, "port": 8123, "batch": 4}


@pytest.mark.parametrize("text, message", [
    ("presets = 'default'\n", "unknown setting 'presets'"),
    ("port = '7787'\n", "port must be int"),
    ("warm_up = 1\n", "warm_up must be bool"),
    ("batch = 2.5\n", "batch must be int"),
    ("port = true\n", "port must be int"),
    ("models = []\n", "models must be a non-empty list of strings"),
    ("models = 'sface'\n", "models must be a non-empty list of strings"),
    ("preset = \n", "not valid TOML"),
])
def test_a_bad_file_is_an_error_naming_the_file_and_key(tmp_path, text, message):
    (tmp_path / "daemon.toml").write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_settings(tmp_path)
    assert "daemon.toml" in str(info.value)


def test_port_precedence_is_option_then_environment_then_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("LOWKEY_DAEMON_PORT", raising=False)
    assert port_from_env() == 7787
    (tmp_path / "daemon.toml").write_text("port = 8123\n")
    assert port_from_env() == 8123
    monkeypatch.setenv("LOWKEY_DAEMON_PORT", "8124")
    assert port_from_env() == 8124
    assert port_from_env(8125) == 8125


def test_the_command_line_wins_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path))
    (tmp_path / "daemon.toml").write_text('preset = "default"\nmodels = ["sface"]\n'
                                          "queue_size = 3\nwarm_up = false\nbatch = 4\n")
    seen = {}

    def fake_create_app(config, tokens):  # stop before anything loads: we test the config
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr("lowkey_daemon.app.create_app", fake_create_app)
    monkeypatch.setattr(cli, "_setup_logging", lambda state_dir, verbose: tmp_path / "log")
    with pytest.raises(SystemExit):
        cli.main(["--preset", "subtle", "--port", "9000", "--batch", "2"])
    config = seen["config"]
    assert (config.preset, config.models, config.queue_size, config.warm_up, config.port,
            config.batch) == ("subtle", ("sface",), 3, False, 9000, 2)
