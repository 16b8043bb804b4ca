"""Moved to the harness (harness/botenv.py): a thin re-export kept for tests written against
the old names. New code imports from harness."""

from harness.botenv import Env, Person, bot_env, login, sim_settings, wait_until  # noqa: F401
