"""The README's figures and steps are the files' own: a change to render.yaml, a default or a
limit that the README states fails here until the README says it too."""

import re
from pathlib import Path

from bot.config import Settings, load_settings
from helpers import logs
from plugins.admin import ADMIN_COMMANDS
from plugins.basic import KNOWN_COMMANDS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLUEPRINT = (ROOT / "render.yaml").read_text()


def _yaml(key: str) -> str:
    return re.search(rf"^\s*{key}:\s*([^#\n]+)", BLUEPRINT, re.M).group(1).strip().strip('"')


def _env(key: str) -> str:
    return re.search(rf"- key: {key}\n\s+value: \"?([^\"\n]+)", BLUEPRINT).group(1)


def test_deploy_section_matches_render_yaml():
    assert f"a {_yaml('sizeGB')} GB disk at `{_yaml('mountPath')}`" in README
    assert f"Python {_env('PYTHON_VERSION')}" in README
    assert f"`{_yaml('startCommand')}`" in README
    assert f"health check `{_yaml('healthCheckPath')}`" in README
    assert f"{_yaml('plan')} plan" in README
    asked = re.findall(r"- key: (\w+)\n\s+sync: false", BLUEPRINT)
    step3 = README.split("3. Fill in the secrets")[1].split("4. Deploy")[0]
    for key in asked:
        assert f"`{key}`" in step3, key


def test_settings_figures_match_the_defaults():
    roomy = load_settings(environ={}, env_file=None)
    small = load_settings(environ={"RENDER": "true"}, env_file=None)
    assert (f"`MAX_SESSIONS={small.max_sessions}`" in README
            and f"`MEMORY_LIMIT_MB={small.memory_limit_mb}`" in README
            and f"`MEMORY_WARN_MB={small.memory_warn_mb}`" in README
            and f"`TRANSFER_CONNECTIONS={small.transfer_connections}`" in README
            and f"`TRANSFER_PARTS_IN_FLIGHT={small.transfer_parts_in_flight}`" in README)
    assert f"({small.max_sessions} on Render, {roomy.max_sessions} elsewhere)" in README
    assert f"older than {roomy.janitor_max_age_s // 60} minutes" in README
    assert f"`MESSAGES_PER_MINUTE` ({roomy.messages_per_minute})" in README
    assert f"{roomy.free_batch_cap} free, {roomy.premium_batch_cap} premium" in README
    assert f"`STARTUP_TIMEOUT` ({Settings.startup_timeout_s} s)" in README
    assert f"`STARTUP_RETRIES` times ({Settings.startup_retries})" in README
    pauses = ", ".join(str(2 * 2 ** i) for i in range(Settings.startup_retries))
    assert f"pauses of {pauses} s" in README


def test_log_rotation_figures():
    assert f"rotated at {logs.MAX_BYTES // 2**20} MB ({logs.BACKUP_COUNT} backups)" in README


def test_every_command_is_in_the_readme():
    for command in KNOWN_COMMANDS | set(ADMIN_COMMANDS):
        assert f"/{command}" in README, command
