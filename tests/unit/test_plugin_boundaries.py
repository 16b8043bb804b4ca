"""Plugins parse, call a service, reply: they reach only `client.services` (helpers/services.py)
and import no storage, so the app as a whole and the storage driver stay out of their reach."""

import ast
import dataclasses
from pathlib import Path

import pytest

from helpers.services import Services

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
STORAGE = {"sqlite3", "aiosqlite", "asyncpg", "psycopg", "psycopg2", "sqlalchemy"}
STORAGE_MODULES = {"helpers.database"}
SERVICES = {f.name for f in dataclasses.fields(Services)}


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            if name.split(".")[0] in STORAGE or name in STORAGE_MODULES:
                found.append(f"line {node.lineno}: imports {name}")
        if isinstance(node, ast.Attribute) and node.attr == "app":
            found.append(f"line {node.lineno}: reaches .app")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "services" and node.attr not in SERVICES:
            found.append(f"line {node.lineno}: services.{node.attr} is no service")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            found.append(f"line {node.lineno}: reaches a private attribute {node.attr}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" \
                and any(isinstance(a, ast.Constant) and a.value == "app" for a in node.args):
            found.append(f"line {node.lineno}: getattr(..., 'app')")
    return found


@pytest.mark.parametrize("path", sorted(PLUGINS.glob("*.py")), ids=lambda p: p.name)
def test_plugin_stays_behind_its_services(path):
    assert violations(path.read_text()) == []


def test_every_plugin_that_reaches_the_bot_uses_services():
    users = [p.name for p in PLUGINS.glob("*.py") if "client.services." in p.read_text()]
    assert len(users) >= 8


@pytest.mark.parametrize("planted", [
    "import sqlite3",
    "from aiosqlite import OperationalError",
    "import asyncpg.exceptions",
    "from helpers.database import Database",
    "async def f(client):\n    await client.app.db.ensure_user(1)",
    "async def f(client):\n    return client.services.db",
    "def f(client):\n    return getattr(client, 'app')",
    "async def f(client):\n    return await client.services.admin._db.count_users()",
    "async def f(client):\n    jobs = client.services.jobs\n    return jobs._queue",
])
def test_the_check_sees_a_planted_use(planted):
    assert violations(planted)
