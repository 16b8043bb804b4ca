"""Access hashes as Telegram hands them out: one per peer and per account.

"Access hashes may not be reused across different accounts" (core.telegram.org/api/peers,
"Access hash"): the same channel or user carries a different access_hash for every account
that sees it, and an account can only use the one it was given in a user/channel
constructor. tgsim derives each account's hash from the peer's secret base hash, so it need
not remember who saw what: an account can only hold its own hash if tgsim sent it.

Bots get no exception here, which is stricter than Telegram: tdlib's bots send access_hash 0
for a user or channel they hold no hash for, so Telegram evidently accepts that from bots in
some cases. It is undocumented, so the bot must not depend on it.
"""

from __future__ import annotations

import hashlib


def for_viewer(base: int, viewer_id: int | None) -> int:
    """The access_hash `viewer_id` sees for a peer whose secret base hash is `base`."""
    digest = hashlib.blake2b(f"{base}:{viewer_id or 0}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1  # never 0: 0 means "none"
