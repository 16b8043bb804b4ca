"""Which client reads a chat for a user, and whether what it read may be copied.

The one place for that choice (the pipeline and the link handlers both ask it):

- the bot reads first: public chats, and chats it is a member of;
- what the bot cannot read goes through the user's own session, the only way into their private
  chats, and the only client that can check or join an invite link for them;
- a copy re-sends media by reference, which Telegram refuses for protected content
  (core.telegram.org/api/content-protection), and only the bot posts it: protected content, and
  anything a user's session read, is downloaded and uploaded again.
"""

from __future__ import annotations

from enum import Enum

from helpers.queue_manager import JobError

_BOT_HAS_NO_HASH = (
    "I cannot open that chat: it is private, and Telegram has not introduced it to me (a "
    "bot learns a private chat when it is added to it, or I am not in it at all). If I "
    "should be a member, remove me from the chat and add me again")
_OR_LOGIN = "; or log in with /login so I can read it through your account."
_NOT_A_MEMBER = ("That chat is private and I am not a member: log in with /login so I can "
                 "read it through your account.")
LOGIN_FOR_INVITES = ("Invite links are joined with your own account: log in with /login "
                     "first, then send the invite link again.")


class UnknownPeer(JobError):
    """The client holds no access_hash for the chat that Telegram accepts."""


class Session(Enum):
    """Whether a user's own session can serve them."""
    OFF = "logins are disabled (no SESSION_KEY)"
    NONE = "the user has not logged in"
    READY = "the user has a stored session"


class ChatAccess:
    """sessions: the SessionManager (None when the bot runs without user sessions)."""

    def __init__(self, sessions):
        self.sessions = sessions

    async def session(self, user_id: int) -> Session:
        if self.sessions is None or not self.sessions.enabled:
            return Session.OFF
        if not await self.sessions.has_session(user_id):
            return Session.NONE
        return Session.READY

    async def after_bot_failed(self, user_id: int, chat, error: JobError) -> None:
        """The bot could not read `chat`: returns when the user's session should try, else
        raises the JobError that tells the user what to do."""
        state = await self.session(user_id)
        if state is Session.READY:
            return
        private_id = isinstance(chat, int)
        if isinstance(error, UnknownPeer) and private_id:
            raise JobError(_BOT_HAS_NO_HASH + ("." if state is Session.OFF else _OR_LOGIN)) \
                from None
        if state is Session.NONE and private_id:
            raise JobError(_NOT_A_MEMBER) from None
        raise error

    @staticmethod
    def may_copy(msg, read_by_bot: bool) -> bool:
        """Whether the bot may copy `msg` by reference instead of downloading it."""
        return read_by_bot and not msg.has_protected_content
