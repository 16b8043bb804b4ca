"""Moved to the harness (harness/simclients.py, harness/files.py): a thin re-export kept for
tests written against the old names. New code imports from harness."""

from harness.files import file_digest, write_random  # noqa: F401
from harness.ports import free_port  # noqa: F401
from harness.signin import API_HASH, API_ID  # noqa: F401
from harness.simclients import SimClients  # noqa: F401
