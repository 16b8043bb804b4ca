"""The pipeline as a worker runs it: a delivery intent recorded before the first send, and
every send of a job with the job's own random_ids (helpers/delivery_ids.py).

How a job is delivered once though its worker may die at any moment:
1. before the first send the worker records an intent (fleet_delivery_intents);
2. each message of the job is sent with the n-th id of the job's keyed sequence;
3. after the sends, `delivered` is set, then the job is marked done.
A worker that takes the job over after the first died re-runs it. If it finds `delivered`
set it only says so (the pipeline's own check). Otherwise it sends again with the same ids;
if the first worker's send had reached Telegram, Telegram answers RANDOM_ID_DUPLICATE and
posts nothing, which this worker takes as "that one was delivered" and goes on with the next
send of the job (a file split in parts resumes after the parts already delivered).
"""

from __future__ import annotations

import logging

from helpers import delivery_ids
from helpers.pipeline import Pipeline

log = logging.getLogger("fleet")

class FleetPipeline(Pipeline):
    def __init__(self, *args, store, worker: str, id_secret: bytes, **kwargs):
        super().__init__(*args, **kwargs)
        self.store = store
        self.worker = worker
        self.id_secret = id_secret
        delivery_ids.install(self.bot)

    async def _deliver_from(self, client, chat, msg, job, reporter) -> str:
        if await self.store.record_intent(self.worker, job["id"]):
            log.info("job #%s: an earlier attempt may have sent it; sending with the same "
                     "ids", job["id"])
        with delivery_ids.scope(self.id_secret, job["id"]):
            return await super()._deliver_from(client, chat, msg, job, reporter)
