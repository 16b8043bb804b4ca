"""The order handlers run in, written in one place.

The client library runs, for each update, the groups in ascending order, and in each group only
the FIRST handler whose filter matches (a raw-update handler matches every update); within a
group the order is the order of loading, which for smart plugins is their sorted file paths.
So two handlers that must run in a given order never share a group here, and a raw-update
handler has a group to itself: precedence never depends on a file's name.
(tests/unit/test_handler_order.py checks both.)
"""

# Every update reaches this one, alone in its group: a raw handler placed beside a message
# handler would take each message from it. It keeps the access_hash a membership update carries.
MEMBERSHIP = -6

# Each incoming message is acted on once, across restarts and the catch-up after them; an
# offline-stale link gets a note. First of all: nothing else may act on a repeat.
ONCE = -5

# Banned users and floods stop here, before any conversation or command sees the message.
GATE = -4

# The /login conversation: a phone number, code or password must never reach another handler
# (it deletes them and always stops the update), so it runs before every other prompt.
LOGIN = -3

# Admin commands refused to everyone else, before anything (a pending settings prompt
# included) can let such a command through to its handler in COMMANDS.
ADMIN_ONLY = -2

# The answer to a /settings prompt: before COMMANDS so the answer never reaches the link
# handler; a command leaves the prompt and goes on.
PROMPT = -1

# Commands, links and buttons: their filters do not overlap, so they share the library's
# default group.
COMMANDS = 0

# The reply to a command the bot does not know: after everything else has had its say.
UNKNOWN = 1

# The groups in which at most one handler per update type may live (all but COMMANDS).
ORDERED = (MEMBERSHIP, ONCE, GATE, LOGIN, ADMIN_ONLY, PROMPT, UNKNOWN)
