"""Test, benchmark and rehearsal harness: processes, tgsim in and out of process, simulated users.

Never imported by the product at import time (bot/, helpers/, plugins/ load it lazily, and only
for `python -m bot rehearse` / `--sim`).
"""
