import os
import re
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

TOKEN = "123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0"
HASH = "0123456789abcdef0123456789abcdef"


def load(env=None, env_file=None):
    return load_settings(dict(env or {}), env_file=env_file)


def test_defaults_roomy():
    s = load()
    assert s.constrained is False
    assert s.api_id is None and s.api_hash == "" and s.bot_token == ""
    assert s.owner_ids == () and s.admin_ids == () and s.owner_id is None
    assert s.database_path == "data/bot.db"
    assert s.assets_dir == "Assets"
    assert s.log_file == "logs.txt"
    assert s.max_concurrent_downloads == 4
    assert s.max_queue == 20
    assert s.max_jobs_per_user == 5
    assert s.max_sessions == 5
    assert s.session_idle_s == 600
    assert s.telegram_server is None and s.telegram_server_key is None
    assert s.memory_limit_mb == 1024 and s.memory_warn_mb == 800
    assert s.spike_mb == 50
    assert s.memory_check_interval == 300
    assert s.port == 8080
    assert s.progress_interval_s == 5.0
    assert s.janitor_max_age_s == 1800
    assert (s.free_daily_jobs, s.premium_daily_jobs) == (50, 1000)
    assert (s.free_batch_cap, s.premium_batch_cap) == (20, 200)
    assert s.log_level == "INFO"
    assert s.session_key == ""


@pytest.mark.parametrize("var", ["RENDER", "RENDER_EXTERNAL_URL"])
def test_constrained_profile(var):
    s = load({var: "https://x.onrender.com" if var.endswith("URL") else "true"})
    assert s.constrained is True
    assert s.max_concurrent_downloads == 2
    assert s.max_sessions == 3
    assert s.memory_limit_mb == 512
    assert s.memory_warn_mb == 400


def test_blank_render_is_not_constrained():
    assert load({"RENDER": "", "RENDER_EXTERNAL_URL": "  "}).constrained is False


def test_constrained_override():
    assert load({"RENDER": "1", "CONSTRAINED": "false"}).constrained is False
    assert load({"CONSTRAINED": "yes"}).max_sessions == 3
    with pytest.raises(ConfigError, match="CONSTRAINED must be true or false, got 'maybe'"):
        load({"CONSTRAINED": "maybe"})


def test_every_value_overridable(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN RSA PUBLIC KEY-----\n")
    env = {
        "API_ID": "12345", "API_HASH": HASH, "BOT_TOKEN": TOKEN,
        "OWNER_ID": "11, 22 33", "ADMINS": "44,22", "SESSION_KEY": "k" * 44,
        "DATABASE_PATH": "/tmp/x.db", "ASSETS_DIR": "/tmp/assets", "LOG_FILE": "/tmp/l.txt",
        "MAX_CONCURRENT_DOWNLOADS": "3", "MAX_QUEUE": "7", "MAX_JOBS_PER_USER": "2",
        "MAX_SESSIONS": "9", "SESSION_IDLE_S": "60", "TELEGRAM_SERVER": "127.0.0.1:9443",
        "TELEGRAM_SERVER_KEY": str(key), "MEMORY_LIMIT_MB": "700", "MEMORY_WARN_MB": "600",
        "SPIKE_MB": "10", "MEMORY_CHECK_INTERVAL": "30", "PORT": "9000",
        "PROGRESS_INTERVAL": "3.5", "JANITOR_MAX_AGE": "99", "FREE_DAILY_JOBS": "1",
        "PREMIUM_DAILY_JOBS": "2", "FREE_BATCH_CAP": "3", "PREMIUM_BATCH_CAP": "4",
        "LOG_LEVEL": "debug", "RENDER": "1",
    }
    s = load(env)
    assert s.api_id == 12345 and s.api_hash == HASH and s.bot_token == TOKEN
    assert s.owner_ids == (11, 22, 33) and s.owner_id == 11
    assert s.admin_ids == (11, 22, 33, 44)
    assert s.is_admin(44) and not s.is_admin(55)
    assert s.session_key == "k" * 44
    assert (s.database_path, s.assets_dir, s.log_file) == ("/tmp/x.db", "/tmp/assets", "/tmp/l.txt")
    assert (s.max_concurrent_downloads, s.max_queue, s.max_jobs_per_user) == (3, 7, 2)
    assert (s.max_sessions, s.session_idle_s) == (9, 60)
    assert s.telegram_server == ("127.0.0.1", 9443) and s.telegram_server_key == str(key)
    assert (s.memory_limit_mb, s.memory_warn_mb, s.spike_mb) == (700, 600, 10)
    assert (s.memory_check_interval, s.port, s.progress_interval_s) == (30, 9000, 3.5)
    assert s.janitor_max_age_s == 99
    assert (s.free_daily_jobs, s.premium_daily_jobs) == (1, 2)
    assert (s.free_batch_cap, s.premium_batch_cap) == (3, 4)
    assert s.log_level == "DEBUG" and s.constrained is True
    assert s.has_telegram_credentials and s.missing_credentials() == []


def test_env_file_and_environment_wins(tmp_path):
    f = tmp_path / "config.env"
    f.write_text("MAX_QUEUE=11\nPORT=1234\n# comment\nAPI_ID=\n")
    s = load({"PORT": "4321"}, env_file=str(f))
    assert s.max_queue == 11
    assert s.port == 4321
    assert s.api_id is None


def test_env_file_does_not_touch_os_environ(tmp_path, monkeypatch):
    monkeypatch.delenv("ZZ_TEST_ONLY", raising=False)
    f = tmp_path / "config.env"
    f.write_text("ZZ_TEST_ONLY=1\nMAX_QUEUE=12\n")
    monkeypatch.setenv("MAX_QUEUE", "13")
    s = load_settings(env_file=str(f))  # default environ is os.environ
    assert s.max_queue == 13
    assert "ZZ_TEST_ONLY" not in os.environ


def test_missing_env_file_is_fine(tmp_path):
    assert load(env_file=str(tmp_path / "nope.env")).port == 8080


def test_missing_credentials():
    s = load({"API_ID": "5"})
    assert not s.has_telegram_credentials
    assert s.missing_credentials() == ["API_HASH", "BOT_TOKEN"]
    assert load().missing_credentials() == ["API_ID", "API_HASH", "BOT_TOKEN"]


def one_line(err: ConfigError) -> str:
    text = str(err)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize("env, pattern", [
    ({"API_ID": "abc"}, r"^API_ID must be a positive integer, got 'abc'$"),
    ({"API_ID": "0"}, r"^API_ID must be a positive integer, got '0'$"),
    ({"API_ID": "-5"}, r"^API_ID must be a positive integer"),
    ({"API_ID": "1.5"}, r"^API_ID must be a positive integer"),
    ({"BOT_TOKEN": "nonsense"}, r"^BOT_TOKEN must look like"),
    ({"API_HASH": "has space!"}, r"^API_HASH must be"),
    ({"OWNER_ID": "12,abc"}, r"^OWNER_ID must be a comma or space separated list.*'abc'"),
    ({"ADMINS": "-3"}, r"^ADMINS must be"),
    ({"MAX_QUEUE": "0"}, r"^MAX_QUEUE must be"),
    ({"MAX_QUEUE": "lots"}, r"^MAX_QUEUE must be .*'lots'"),
    ({"MAX_CONCURRENT_DOWNLOADS": "1e3"}, r"^MAX_CONCURRENT_DOWNLOADS must be"),
    ({"PORT": "70000"}, r"^PORT must be an integer between 1 and 65535, got '70000'$"),
    ({"PROGRESS_INTERVAL": "1"}, r"^PROGRESS_INTERVAL must be a number >= 3, got '1'$"),
    ({"PROGRESS_INTERVAL": "nan"}, r"^PROGRESS_INTERVAL must be a number"),
    ({"PROGRESS_INTERVAL": "fast"}, r"^PROGRESS_INTERVAL must be a number"),
    ({"MEMORY_LIMIT_MB": "500", "MEMORY_WARN_MB": "500"}, r"^MEMORY_WARN_MB must be below"),
    ({"LOG_LEVEL": "LOUD"}, r"^LOG_LEVEL must be one of"),
    ({"DATABASE_PATH": "a\x00b"}, r"^DATABASE_PATH must be a file system path"),
    ({"ASSETS_DIR": "a\nb"}, r"^ASSETS_DIR must be a file system path"),
    ({"TELEGRAM_SERVER": "localhost"}, r"^TELEGRAM_SERVER must be host:port"),
    ({"TELEGRAM_SERVER": "localhost:0"}, r"^TELEGRAM_SERVER must be host:port"),
    ({"TELEGRAM_SERVER": "localhost:http"}, r"^TELEGRAM_SERVER must be host:port"),
    ({"TELEGRAM_SERVER": ":443"}, r"^TELEGRAM_SERVER must be host:port"),
    ({"TELEGRAM_SERVER": "127.0.0.1:8443"}, r"^TELEGRAM_SERVER_KEY must be set"),
    ({"TELEGRAM_SERVER_KEY": "/x.pem"}, r"^TELEGRAM_SERVER_KEY is set but TELEGRAM_SERVER is not"),
    ({"TELEGRAM_SERVER": "127.0.0.1:8443", "TELEGRAM_SERVER_KEY": "/no/such/key.pem"},
     r"^TELEGRAM_SERVER_KEY file does not exist: '/no/such/key.pem'$"),
])
def test_config_errors_are_one_clear_line(env, pattern):
    with pytest.raises(ConfigError) as info:
        load(env)
    assert re.search(pattern, one_line(info.value)), str(info.value)


def test_bot_token_error_does_not_echo_value():
    with pytest.raises(ConfigError) as info:
        load({"BOT_TOKEN": "supersecretvalue"})
    assert "supersecretvalue" not in str(info.value)


def test_ipv6_and_hostname_server(tmp_path):
    key = tmp_path / "k.pem"
    key.write_text("x")
    assert load({"TELEGRAM_SERVER": "[::1]:443", "TELEGRAM_SERVER_KEY": str(key)}
                ).telegram_server == ("::1", 443)
    assert load({"TELEGRAM_SERVER": "tgsim.local:8443", "TELEGRAM_SERVER_KEY": str(key)}
                ).telegram_server == ("tgsim.local", 8443)


def test_warn_default_follows_small_limit():
    s = load({"RENDER": "1", "MEMORY_LIMIT_MB": "300"})
    assert s.memory_warn_mb < s.memory_limit_mb


def test_repr_hides_secrets():
    s = load({"API_ID": "7", "API_HASH": HASH, "BOT_TOKEN": TOKEN, "SESSION_KEY": "sekrit-key"})
    text = repr(s)
    assert HASH not in text and TOKEN not in text and "sekrit-key" not in text
    assert str(s) == text
    assert "api_id=7" in text and "api_hash='***'" in text


def test_frozen():
    s = load()
    with pytest.raises(FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    assert isinstance(s, Settings)


def test_example_file_documents_every_variable():
    example = Path(__file__).resolve().parents[2] / "config.env.example"
    text = example.read_text()
    for var in ["API_ID", "API_HASH", "BOT_TOKEN", "OWNER_ID", "ADMINS", "SESSION_KEY",
                "DATABASE_PATH", "ASSETS_DIR", "LOG_FILE", "MAX_CONCURRENT_DOWNLOADS",
                "MAX_QUEUE", "MAX_JOBS_PER_USER", "MAX_SESSIONS", "SESSION_IDLE_S",
                "TELEGRAM_SERVER", "TELEGRAM_SERVER_KEY", "MEMORY_LIMIT_MB", "MEMORY_WARN_MB",
                "SPIKE_MB", "MEMORY_CHECK_INTERVAL", "PORT", "PROGRESS_INTERVAL",
                "JANITOR_MAX_AGE", "FREE_DAILY_JOBS", "PREMIUM_DAILY_JOBS", "FREE_BATCH_CAP",
                "PREMIUM_BATCH_CAP", "RENDER", "RENDER_EXTERNAL_URL", "LOG_LEVEL", "CONSTRAINED",
                "STARTUP_RETRIES", "STARTUP_TIMEOUT", "CONFIG_ENV"]:
        assert re.search(rf"^#? ?{var}=", text, re.M), var
    # The example itself must load cleanly (blank values mean "use the default").
    assert load(env_file=str(example)).port == 8080


@pytest.mark.parametrize("marker", ["RENDER", "RENDER_EXTERNAL_URL", "DYNO", "FLY_APP_NAME"])
def test_deployment_markers(marker):
    assert load_settings(environ={marker: "x"}, env_file=None).deployed
    assert not load_settings(environ={}, env_file=None).deployed


def test_startup_bounds():
    s = load_settings(environ={"STARTUP_RETRIES": "0", "STARTUP_TIMEOUT": "5"}, env_file=None)
    assert (s.startup_retries, s.startup_timeout_s) == (0, 5)
    with pytest.raises(ConfigError, match="STARTUP_RETRIES"):
        load_settings(environ={"STARTUP_RETRIES": "-1"}, env_file=None)
