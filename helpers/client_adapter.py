"""The one door to the client library's private internals.

Everything that touches a private attribute or class of pyrogram lives here, so an upgrade of
the library breaks in one place, and the contract tests in tests/unit pin what this module relies
on. Prefer the public API where it exists.
"""
