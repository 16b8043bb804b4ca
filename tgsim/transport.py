"""TCP framings a client may open with: abridged (0xef), intermediate and padded intermediate.

The first bytes of a connection say which one; replies use the same framing.
"""

from __future__ import annotations

import asyncio
import os
import struct


class Framing:
    name = "?"

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        raise NotImplementedError

    def frame(self, payload: bytes) -> bytes:
        raise NotImplementedError


class Abridged(Framing):
    name = "abridged"

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        first = (await reader.readexactly(1))[0]
        if first & 0x7F == 0x7F:
            length = int.from_bytes(await reader.readexactly(3), "little")
        else:
            length = first & 0x7F
        return await reader.readexactly(length * 4)

    def frame(self, payload: bytes) -> bytes:
        words = len(payload) // 4
        if words < 0x7F:
            return bytes([words]) + payload
        return b"\x7f" + words.to_bytes(3, "little") + payload


class Intermediate(Framing):
    name = "intermediate"

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        (length,) = struct.unpack("<I", await reader.readexactly(4))
        return await reader.readexactly(length & 0x7FFFFFFF)

    def frame(self, payload: bytes) -> bytes:
        return struct.pack("<I", len(payload)) + payload


class PaddedIntermediate(Intermediate):
    name = "padded-intermediate"

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        data = await super().read(reader)
        return data[: len(data) - len(data) % 4]

    def frame(self, payload: bytes) -> bytes:
        padding = os.urandom(len(payload) % 4 or 0)
        return struct.pack("<I", len(payload) + len(padding)) + payload + padding


async def detect(reader: asyncio.StreamReader) -> Framing:
    """Read the opening tag; anything else (obfuscated2, full) is refused by the caller."""
    first = await reader.readexactly(1)
    if first == b"\xef":
        return Abridged()
    rest = await reader.readexactly(3)
    tag = first + rest
    if tag == b"\xee" * 4:
        return Intermediate()
    if tag == b"\xdd" * 4:
        return PaddedIntermediate()
    raise ValueError(f"unsupported transport tag {tag.hex()}")
