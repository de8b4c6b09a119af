"""The shared per-layer result cache in Redis: one analysis of a layer for a whole fleet.

A ``ChainedCache`` puts this level behind the store's own (local first, Redis second,
write-through). Entries hold the bytes the local cache holds (``encode_results``) under the
same key (``cache_id``: diff_id, analyzer, version, options/rules digest), with a TTL.

Two workers that meet the same layer at the same moment must not both analyze it: a miss takes
a lease (``SET NX`` with a TTL) on the entry; whoever finds the lease taken waits for the
entry to appear, and takes the lease over if its holder vanished (the lease expires). Every
put counts itself in ``imgscan:layer:analyzed`` so tests and benchmarks can show that each
entry was computed once.

Redis is an accelerator, never a dependency of a scan: any Redis error turns this level into
a miss (and a put into a no-op) with one warning, and it is tried again after a pause.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

from imgscan.analyzers.cache import cache_id, decode_results, encode_results
from imgscan.analyzers.interface import AnalysisResult

log = logging.getLogger("imgscan.server.cache")

PREFIX = "imgscan:layer:"
ANALYZED = "imgscan:layer:analyzed"  # hash: cache id -> how many times it was put
DEFAULT_TTL = 30 * 24 * 3600
DEFAULT_LEASE = 300.0
RETRY_AFTER_OUTAGE = 5.0

_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) else return 0 end"""


def connect(url: str, timeout: float = 2.0) -> Any:
    """A redis-py client for ``url`` with short socket timeouts: an unreachable Redis must
    cost seconds, not a hung scan."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                health_check_interval=30)


class RedisLayerCache:
    """``ResultCache`` over Redis, with per-entry leases so each entry is computed once."""

    def __init__(self, client: Any, *, ttl: int = DEFAULT_TTL,
                 lease_ttl: float | None = None, poll: float = 0.1) -> None:
        import redis

        self.client = client
        self.ttl = ttl
        env_lease = os.environ.get("IMGSCAN_LAYER_LEASE")
        self.lease_ttl = lease_ttl or (float(env_lease) if env_lease else DEFAULT_LEASE)
        self.poll = poll
        self.token = uuid.uuid4().hex
        self._errors = (redis.RedisError, OSError)
        self._down_until = 0.0
        self._held: set[str] = set()
        self._lock = threading.Lock()
        #: what this process saw: hits, misses, leases waited for, outages
        self.stats = {"hits": 0, "misses": 0, "waits": 0, "errors": 0}

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> RedisLayerCache:
        return cls(connect(url), **kw)

    # -- outage handling -------------------------------------------------------------------
    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _outage(self, e: BaseException) -> None:
        self.stats["errors"] += 1
        if self._available():
            log.warning("imgscan: the shared layer cache is unreachable (%s); analyzing "
                        "locally, retrying in %.0f s", e, RETRY_AFTER_OUTAGE)
        self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE

    # -- ResultCache -----------------------------------------------------------------------
    def get(self, diff_id: str, name: str, version: int, key: str
            ) -> dict[str, AnalysisResult] | None:
        if not diff_id or not self._available():
            return None
        entry = cache_id(diff_id, name, version, key)
        try:
            return self._get_or_lease(entry)
        except self._errors as e:
            self._outage(e)
            return None

    def _get_or_lease(self, entry: str) -> dict[str, AnalysisResult] | None:
        waited = False
        deadline = time.monotonic() + 2 * self.lease_ttl
        while True:
            data = self.client.get(PREFIX + entry)
            if data is not None:
                found = decode_results(data)
                if found is not None:
                    self.stats["hits"] += 1
                    return found
            if self.client.set(PREFIX + "lease:" + entry, self.token, nx=True,
                               px=int(self.lease_ttl * 1000)):
                # the holder may have put the entry and let go between our GET and SET NX
                data = self.client.get(PREFIX + entry)
                found = decode_results(data) if data is not None else None
                if found is not None:
                    self.client.eval(_RELEASE, 1, PREFIX + "lease:" + entry, self.token)
                    self.stats["hits"] += 1
                    return found
                with self._lock:
                    self._held.add(entry)
                self.stats["misses"] += 1
                return None  # ours to compute: the scanner will put() it
            if not waited:
                waited = True
                self.stats["waits"] += 1
            if time.monotonic() > deadline:  # a holder that keeps renewing: compute it too
                self.stats["misses"] += 1
                return None
            time.sleep(self.poll)

    def put(self, diff_id: str, name: str, version: int, key: str,
            results: dict[str, AnalysisResult]) -> None:
        if not diff_id:
            return
        entry = cache_id(diff_id, name, version, key)
        with self._lock:
            held = entry in self._held
            self._held.discard(entry)
        if not self._available():
            return
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(PREFIX + entry, encode_results(results), ex=self.ttl)
            pipe.hincrby(ANALYZED, entry, 1)
            if held:
                pipe.eval(_RELEASE, 1, PREFIX + "lease:" + entry, self.token)
            pipe.execute()
        except self._errors as e:
            self._outage(e)

    def analyzed_counts(self) -> dict[str, int]:
        """How many times each entry was computed, fleet-wide (the ``analyzed`` hash)."""
        raw = self.client.hgetall(ANALYZED)
        return {k.decode(): int(v) for k, v in raw.items()}
