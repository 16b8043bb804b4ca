"""Kept peers of a user session: capped, newest first, bound to their user."""

import pytest

from helpers import peers
from helpers.secrets import SecretKeyError, SessionCipher, generate_key


def test_merge_puts_new_first_dedupes_and_caps():
    old = [(i, i * 10, "channel") for i in range(1, peers.MAX_PEERS_PER_SESSION + 1)]
    new = [(5, 999, "channel"), (-7, 1, "user")]
    merged = peers.merge(old, new)
    assert merged[:2] == new
    assert len(merged) == peers.MAX_PEERS_PER_SESSION
    assert [r for r in merged if r[0] == 5] == [(5, 999, "channel")]


def test_unpack_drops_garbage_and_round_trips():
    rows = [(-1001, 42, "channel"), (7, -3, "user")]
    assert peers.unpack(peers.pack(rows)) == rows
    assert peers.unpack("not json") == []
    assert peers.unpack('[[1, 2, "group"], [1, "x", "user"], {"a": 1}]') == []
    assert peers.unpack(None) == []


def test_peers_blob_is_bound_to_its_user_and_is_not_a_session():
    cipher = SessionCipher(generate_key())
    blob = cipher.encrypt(peers.pack([(-1001, 42, "channel")]), peers.aad(1))
    assert peers.unpack(cipher.decrypt(blob, peers.aad(1))) == [(-1001, 42, "channel")]
    with pytest.raises(SecretKeyError):
        cipher.decrypt(blob, peers.aad(2))
    with pytest.raises(SecretKeyError):
        cipher.decrypt(blob)  # not a session string


async def test_peers_live_and_die_with_the_session(db_target):
    from helpers.database import Database
    db = await Database.open(db_target)
    try:
        await db.save_session_peers(1, b"orphan")  # no session: nothing is stored
        assert await db.load_session_peers(1) is None
        await db.save_session(1, b"session")
        await db.save_session_peers(1, b"peers")
        assert await db.load_session_peers(1) == b"peers"
        await db.save_session(1, b"new login")  # a new authorisation starts afresh
        assert await db.load_session_peers(1) is None
        await db.save_session_peers(1, b"peers")
        await db.delete_session(1)
        assert await db.load_session_peers(1) is None
    finally:
        await db.close()


async def test_learn_keeps_the_channels_of_invite_answers_in_both_shapes():
    from pyrogram import Client, raw

    client = Client("learn", api_id=1, api_hash="0" * 32, in_memory=True)
    await client.storage.open()
    try:
        def channel(cid):
            return raw.types.Channel(id=cid, title="c", photo=raw.types.ChatPhotoEmpty(),
                                     date=0, access_hash=cid * 7)

        def updates(*chats):
            return raw.types.Updates(updates=[], users=[], chats=list(chats), date=0, seq=0)

        answers = [raw.types.messages.ChatInviteJoinResultOk(updates=updates(channel(11))),
                   updates(channel(12)),  # older layers answer Updates
                   raw.types.ChatInviteAlready(chat=channel(13))]
        for cid, answer in zip((11, 12, 13), answers):
            assert await peers.learn(client, answer) == [-1000000000000 - cid]
        rows = await peers.export(client, [-1000000000011, -1000000000012, -1000000000013, 5])
        assert rows == [(-1000000000000 - c, c * 7, "channel") for c in (11, 12, 13)]
    finally:
        await client.storage.close()
