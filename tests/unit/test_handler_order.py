"""Handler precedence is written in plugins/order.py, not implied by file names: the library
runs only the first matching handler of a group, in the order the plugins were loaded (their
sorted paths), and a raw-update handler matches every update."""

import importlib
import pkgutil
from collections import defaultdict

from pyrogram.handlers import RawUpdateHandler

import plugins
from plugins import order


def _handlers():
    """(module.function, handler, group) for every handler the smart plugins register."""
    found = []
    for info in pkgutil.iter_modules(plugins.__path__):
        module = importlib.import_module(f"plugins.{info.name}")
        for name, obj in vars(module).items():
            registered = getattr(obj, "handlers", None)
            if not callable(obj) or not isinstance(registered, list):
                continue
            for handler, group in registered:
                found.append((f"{info.name}.{name}", handler, group))
    return found


def test_the_plugins_register_handlers():
    assert len(_handlers()) >= 20


def test_every_group_is_a_named_constant():
    named = set(order.ORDERED) | {order.COMMANDS}
    stray = [(where, group) for where, _, group in _handlers() if group not in named]
    assert not stray, f"handlers in groups plugins/order.py does not name: {stray}"


def test_ordered_handlers_never_share_a_group():
    by_group = defaultdict(list)
    for where, handler, group in _handlers():
        by_group[group].append((where, handler))
    for group, members in by_group.items():
        raw = [w for w, h in members if isinstance(h, RawUpdateHandler)]
        assert not raw or len(members) == 1, \
            f"group {group}: raw handler {raw} would take updates from {members}"
        if group not in order.ORDERED:
            continue
        per_type = defaultdict(list)
        for where, handler in members:
            per_type[type(handler).__name__].append(where)
        shared = {t: ws for t, ws in per_type.items() if len(ws) > 1}
        assert not shared, f"group {group} holds handlers whose order is their file names: " \
                           f"{shared}"


def test_the_precedence():
    groups = {where: group for where, _, group in _handlers()}
    chain = ["membership.membership", "catchup.once", "gate.gate", "account.conversation",
             "admin.admins_only", "settings.answer_prompt", "links.links",
             "basic.unknown_command"]
    assert [groups[w] for w in chain] == sorted(groups[w] for w in chain)
    assert len({groups[w] for w in chain}) == len(chain)
    assert groups["links.links"] == order.COMMANDS
    assert groups["gate.gate_buttons"] == order.GATE
