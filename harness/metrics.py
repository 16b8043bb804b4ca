"""The bot's /metrics read with prometheus_client's own parser of the text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Metrics(dict):
    """Prometheus text as {(sample name, sorted labels): value}."""

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        out = cls()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def get_value(self, name: str, **labels) -> float:
        """A sample's value (a counter by its family name too); 0 for one not exported."""
        key = tuple(sorted(labels.items()))
        for n in (name, name + "_total"):
            if (n, key) in self:
                return self[(n, key)]
        return 0.0

    def has(self, name: str, **labels) -> bool:
        key = tuple(sorted(labels.items()))
        return (name, key) in self or (name + "_total", key) in self

    @property
    def sessions_live(self) -> int:
        return int(self.get_value("bot_sessions_live"))

    @property
    def transfers_active(self) -> int:
        return int(self.get_value("bot_transfers_active"))

    @property
    def queue_waiting(self) -> int:
        return int(self.get_value("bot_queue_waiting"))

    def jobs(self, status: str) -> int:
        return int(self.get_value("bot_jobs", status=status))


async def fetch_metrics(url: str, http=None) -> Metrics:
    """GET url (a bot's /metrics) and parse it; with `http`, an open aiohttp session."""
    import aiohttp

    if http is None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as own:
            return await fetch_metrics(url, own)
    async with http.get(url) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}")
        return Metrics.parse(await resp.text())
