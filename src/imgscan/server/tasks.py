"""The Celery app and its one task, ``imgscan.scan``: Celery on Redis spreads jobs over any
number of ``imgscan worker`` processes on any number of machines.

Settings that make a killed worker cost a delay, never a lost or doubled report:
late acknowledgement (``task_acks_late``; a message is acked after the task returns) and
``task_reject_on_worker_lost`` (a pool child that dies puts its message back); prefetch 1
(a slow scan does not hold queued jobs hostage); a Redis ``visibility_timeout`` longer than
the job lease, itself longer than the hard time limit (with Redis and late acks, a message
unacked for longer than the visibility timeout is delivered again); soft and hard time
limits. Idempotency itself is in ``jobs.run_job``.

Imported only by ``imgscan worker`` and ``imgscan serve``/``audit --queue``: other commands
never load Celery.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.request import Request

from imgscan.server.jobs import Busy, JobStore, ScanSettings, run_job

TASK = "imgscan.scan"
QUEUE = "imgscan"
BUSY_RETRY = 2.0

_settings = ScanSettings()


def make_app(queue_url: str, settings: ScanSettings | None = None) -> Celery:
    """The Celery app for the broker at ``queue_url`` (the producer's and the workers')."""
    s = settings or ScanSettings()
    app = Celery("imgscan", broker=queue_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=s.time_limit,
        task_soft_time_limit=s.soft_time_limit,
        broker_transport_options={"visibility_timeout": s.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
    )
    app.task(name=TASK, bind=True, max_retries=None, Request=AckSafeRequest)(_scan_task)
    return app


class AckSafeRequest(Request):
    """A request whose lost acknowledgement does not stall the worker.

    When Redis goes away while a task runs, the late ack fails; kombu then keeps the message
    as delivered, and with prefetch 1 the worker never asks for another message, even once
    Redis is back. Here the slot is freed locally instead: the message is redelivered if it
    survived in Redis (the job is idempotent), or it was lost with Redis (an audit enqueues
    it again)."""

    def acknowledge(self) -> None:
        if self.acknowledged:
            return
        super().acknowledge()
        message = self._message
        if not message.acknowledged:
            from kombu.transport.virtual.base import QoS

            qos = getattr(message.channel, "qos", None)
            if isinstance(qos, QoS):
                QoS.ack(qos, message.delivery_tag)


def _scan_task(self: Any, job: dict[str, Any]) -> str:
    from imgscan.server.cache import connect

    store = JobStore(connect(self.app.conf.broker_url), _settings.result_ttl)
    try:
        return run_job(job, store, _settings)
    except Busy:
        # another worker has it; if that worker dies, its lease expires and this retry wins
        raise self.retry(countdown=BUSY_RETRY) from None
    except SoftTimeLimitExceeded:
        store.mark(job["id"], "failed",
                   f"the scan took longer than {_settings.soft_time_limit} s")
        return "failed"


def enqueue(app: Celery, job: dict[str, Any]) -> None:
    app.send_task(TASK, args=[job], queue=QUEUE)


def run_worker(queue_url: str, settings: ScanSettings, concurrency: int = 2,
               loglevel: str = "WARNING") -> None:
    """Run a worker in this process until it is stopped (prefork pool, ``concurrency``
    children; each scan uses one core, so one child per core)."""
    global _settings
    _settings = settings
    app = make_app(queue_url, settings)
    argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
            "--pool=prefork", f"--queues={QUEUE}", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-n", f"imgscan-{_hostname()}@%h"]
    app.worker_main(argv)


def _hostname() -> str:
    import os

    return str(os.getpid())
