"""The environment a `python -m bot` child gets in tests, benchmarks and the rehearsal."""

from harness.processes import bot_environment


def test_the_callers_environment_and_config_env_do_not_leak_into_the_bot(monkeypatch):
    monkeypatch.setenv("DEVELOPER_ONLY_VARIABLE", "x")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")  # a documented setting: blank unless given
    monkeypatch.setenv("RENDER", "true")
    env = bot_environment({"PORT": 1234, "SESSION_KEY": None})
    assert "DEVELOPER_ONLY_VARIABLE" not in env and "PYTHONPATH" not in env
    # blank, not absent: the environment wins over a config.env in the working directory
    assert env["LOG_LEVEL"] == "" and env["RENDER"] == "" and env["BOT_TOKEN"] == ""
    assert env["SESSION_KEY"] == "" and env["PORT"] == "1234"
    assert env["PATH"]
