"""The client library's internals are used in one module only (helpers/client_adapter.py).

A scan of the product's source (bot/, helpers/, plugins/) by its syntax tree, so that strings
(a logger named "pyrogram.session") and the product's own private names (``self._live``,
``db._migrate()``) are not taken for the library's. It flags:

- an import of a library module outside its public surface (pyrogram.session, .storage,
  .crypto, .connection, .dispatcher, .client, .file_id, .utils, .raw.core ...) or of an
  underscored name from the library;
- an attribute (or getattr/hasattr/setattr with a constant name) that only the library's
  internals have: ``x.storage``, ``x.dispatcher``, ``x.media_sessions``, ``x.fetch_peers``,
  ``QUALNAME`` ...;
- ``session`` / ``sessions`` / ``conn`` (and a few more names the product also uses for its
  own things) or any ``_name`` read on something named like a client, a storage or a session
  (``client``, ``bot``, ``user``, ``storage``, ``session``, ``*_client``), and any ``_name`` read
  through one of the internal attributes above (``x.message_cache._cache``);
- a private module reached through the package (``pyrogram.session``, ``raw.core``).

It reads names, not types: an internal reached through a variable named otherwise
(``c = client; c.session``) is not seen. It is a guard for review, not a proof.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("bot", "helpers", "plugins")
ADAPTERS = frozenset({"helpers/client_adapter.py"})
NOT_YET_MOVED: frozenset[str] = frozenset()  # every product module goes through the adapter

# The library's public surface: what its documentation shows user code importing.
PUBLIC_MODULES = ("pyrogram.errors", "pyrogram.types", "pyrogram.enums",
                  "pyrogram.filters", "pyrogram.handlers", "pyrogram.raw.types",
                  "pyrogram.raw.functions", "pyrogram.raw.base")
PUBLIC_FROM_PYROGRAM = frozenset({"Client", "errors", "types", "enums", "filters", "handlers",
                                  "raw", "idle", "compose", "__version__"})
PUBLIC_FROM_RAW = frozenset({"types", "functions", "base"})

# Attributes that exist only inside the library (the product has none of these names).
INTERNAL_ATTRS = frozenset({
    "storage", "media_sessions", "sessions_lock", "dispatcher", "message_cache",
    "topic_cache", "fetch_peers", "updates_queue", "locks_list", "handler_worker_tasks",
    "server_public_keys", "parse_messages", "get_channel_id", "get_session",
    "handle_updates", "handle_download", "auth_key", "get_peer_by_id", "update_peers",
    "update_usernames", "get_update_states", "delete_update_state",
    "business_connections", "get_dc_option", "save_file_semaphore", "get_file_semaphore",
    "QUALNAME", "stored_msg_ids", "is_started", "msg_factory", "auth_key_id", "session_id",
})
# Names the product uses for its own things too (the database's load_session and
# set_update_state, a login's pending code): internal only on a client, a storage, a session.
CLIENT_ONLY_ATTRS = frozenset({"session", "sessions", "conn", "executor", "rnd_id",
                               "load_session", "set_update_state", "pending", "connection",
                               "results", "salt"})
CLIENTISH = re.compile(r"^(client|bot|user|reader|storage|session|[a-z_]*_(client|storage))$")


def _is_public_module(module: str) -> bool:
    """pyrogram and pyrogram.raw themselves (their names are checked apart), and everything
    under the public packages."""
    return module in ("pyrogram", "pyrogram.raw") or any(
        module == m or module.startswith(m + ".") for m in PUBLIC_MODULES)


def _last_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _through_internal(node: ast.AST) -> bool:
    """Is `node` (the receiver of an attribute) itself one of the library's internals?"""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        if isinstance(node, ast.Attribute) and node.attr in INTERNAL_ATTRS:
            return True
        node = node.func if isinstance(node, ast.Call) else node.value
    return False


def _attribute_use(receiver: ast.AST, name: str) -> str | None:
    if name in INTERNAL_ATTRS:
        return f".{name}"
    owner = _last_name(receiver)
    if isinstance(receiver, ast.Name) and not name.startswith("__") and (
            (owner == "pyrogram" and name not in PUBLIC_FROM_PYROGRAM)
            or (owner == "raw" and name in ("core", "all"))):  # a local `raw` is common
        return f"{owner}.{name}"  # a private module reached through the package
    clientish = owner is not None and CLIENTISH.match(owner) is not None
    if clientish and (name in CLIENT_ONLY_ATTRS or name.startswith("_")):
        return f"{owner}.{name}"
    if name.startswith("_") and not name.startswith("__") and _through_internal(receiver):
        return f"<internal>.{name}"
    return None


def scan(source: str, filename: str = "<source>") -> list[str]:
    """Each use of the library's internals in `source`, as 'file:line: what'."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        what = None
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pyrogram" and not _is_public_module(alias.name):
                    what = f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "pyrogram":
            names = {a.name for a in node.names}
            if not _is_public_module(node.module):
                what = f"from {node.module} import ..."
            elif node.module == "pyrogram" and names - PUBLIC_FROM_PYROGRAM:
                what = f"from pyrogram import {', '.join(sorted(names - PUBLIC_FROM_PYROGRAM))}"
            elif node.module == "pyrogram.raw" and names - PUBLIC_FROM_RAW:
                what = f"from pyrogram.raw import {', '.join(sorted(names - PUBLIC_FROM_RAW))}"
            elif any(n.startswith("_") for n in names):
                what = f"from {node.module} import a private name"
        elif isinstance(node, ast.Attribute):
            what = _attribute_use(node.value, node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "hasattr", "setattr", "delattr") \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str):
            what = _attribute_use(node.args[0], node.args[1].value)
        if what is not None:
            found.append(f"{filename}:{node.lineno}: {what}")
    return found


def _product_files():
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def test_only_the_adapter_touches_the_library_internals():
    found = []
    for rel, path in _product_files():
        if rel in ADAPTERS or rel in NOT_YET_MOVED:
            continue
        found += scan(path.read_text(encoding="utf-8"), rel)
    assert not found, ("the client library's internals belong in helpers/client_adapter.py "
                       "(add a named function there, pinned in "
                       "tests/unit/test_client_adapter_contract.py):\n" + "\n".join(found))


def test_the_adapter_is_where_they_are():
    """The scan is not blind: it sees the adapter's own uses."""
    text = (ROOT / "helpers/client_adapter.py").read_text(encoding="utf-8")
    kinds = {line.split(": ", 1)[1] for line in scan(text)}
    assert {"from pyrogram.storage import ...", "from pyrogram.crypto import ...",
            "from pyrogram import utils", ".dispatcher", ".storage", ".media_sessions",
            "client.session", "client.sessions", ".message_cache", ".QUALNAME"} <= kinds


PLANTED = [
    "from pyrogram.session import Session",
    "import pyrogram.storage",
    "from pyrogram import utils",
    "from pyrogram.client import Cache",
    "from pyrogram.raw.core import TLObject",
    "from pyrogram.session.session import Result as _Result",
    "from pyrogram.raw import core",
    "client.session.stop()",
    "self.bot.sessions.clear()",
    "flow.client.media_sessions",
    "await client.storage.save()",
    "app.bot.dispatcher.updates_queue.empty()",
    "getattr(self.bot.message_cache, '_cache', None)",
    "getattr(client.storage, 'conn', None)",
    "user_client._server_time_offset",
    "await client.load_session()",
    "await storage.set_update_state(state)",
    "session.pending.clear()",
    "session.results[msg_id]; await session.connection.send(data); session.salt",
    "session.msg_factory(rpc); session.auth_key_id; session.session_id",
    "x.message_cache._cache.clear()",
    "type(obj).QUALNAME",
    "hasattr(type(v), 'QUALNAME')",
    "import pyrogram; pyrogram.session.Session",
    "from pyrogram import raw; raw.core.TLObject",
]
INNOCENT = [
    "import logging; logging.getLogger('pyrogram.session')",
    "from pyrogram import Client, errors, enums, filters, raw, types",
    "from pyrogram.raw.functions.messages import CheckChatInvite",
    "from pyrogram.raw.types.messages import ChatInviteJoinResultWebView",
    "from pyrogram.types import InlineKeyboardButton as Button",
    "self._live.clear(); self.sessions.describe(); app.sessions.use(1)",
    "await db._migrate(); reservation._released = True",
    "await self.db.load_session(uid); await db.set_update_state(1, 2, 3, 4); flow.pending",
    "async with app.sessions.use(uid) as session: await session.invoke(rpc)",
    "client.is_connected and client.me.username",
    "from helpers.client_adapter import stop_dc_sessions",
    "entry.client; self._bans.clear(); obj.__slots__",
    "pyrogram.__version__; pyrogram.Client; raw.types.InputPeerEmpty(); raw.functions.Ping",
]


def test_the_scan_catches_each_kind_of_use_and_nothing_of_the_products_own():
    for snippet in PLANTED:
        assert scan(snippet), f"missed: {snippet}"
    for snippet in INNOCENT:
        assert not scan(snippet), f"flagged the product's own: {snippet}: {scan(snippet)}"
