"""helpers/event_loop.py: the bot and its tests run on the same loop, uvloop where installed."""

import asyncio
import os

import pytest

from bot.config import ConfigError, load_settings
from helpers import event_loop


async def test_tests_run_on_the_loop_the_bot_runs_on():
    choice = os.environ.get("EVENT_LOOP", "auto").lower() or "auto"
    want = event_loop.factory(choice)
    loop = asyncio.get_running_loop()
    if want is asyncio.new_event_loop:
        assert type(loop).__module__.startswith("asyncio")
    else:
        assert type(loop).__module__.startswith("uvloop"), type(loop)


def test_choices():
    assert event_loop.factory("asyncio") is asyncio.new_event_loop
    with pytest.raises(ValueError):
        event_loop.factory("trio")
    try:
        import uvloop
    except ImportError:
        assert event_loop.factory("auto") is asyncio.new_event_loop
        with pytest.raises(ImportError):
            event_loop.factory("uvloop")
    else:
        assert event_loop.factory("auto") is uvloop.new_event_loop
    assert event_loop.run(asyncio.sleep(0, "done"), event_loop.factory("asyncio")) == "done"


def test_a_bad_event_loop_setting_is_one_clear_error():
    with pytest.raises(ConfigError, match="EVENT_LOOP must be one of auto, uvloop, asyncio"):
        load_settings({"EVENT_LOOP": "twisted"}, env_file=None)
    assert load_settings({"EVENT_LOOP": "ASYNCIO"}, env_file=None).event_loop == "asyncio"
