"""The tracker's sender: delivers a run folder's metrics.jsonl to the store every second, off the training process.

MLflow spends ~0.1-0.2 ms of Python per metric in `log_batch` (the SQLite store's ORM rows in-process; the HTTP
client's JSON encoding); in a thread of the training process that time would hold the GIL the training loop
needs. So the tracker starts this module as a small process (`python -m gatscale.tracking.sender RUN_DIR`) that
tails the file.

The process stops when its stdin reaches EOF: the tracker's finish() closes the pipe, and a trainer that dies
closes it too. SIGINT/SIGTERM are ignored (a preempted job's trainer calls finish(), after which the sender
drains the file for at most --finish-timeout seconds; what is left stays for `gatscale sync`). System metrics,
when on, are sampled here too.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from .metrics_log import MetricsLog, now_ms
from .store import client_for, configure_http_client

log = logging.getLogger(__name__)


def send_loop(mlog: MetricsLog, stop: threading.Event, flush_interval: float = 1.0, finish_timeout: float = 20.0,
              max_backoff: float = 60.0) -> int:
    """Deliver every `flush_interval` s, backing off (up to `max_backoff`) while the store fails; once `stop` is
    set, drain for at most `finish_timeout` s. Returns the bytes left undelivered."""
    from .sync import deliver

    client, delay, deadline, outage_since = None, flush_interval, None, None
    while True:
        if not stop.is_set():
            stop.wait(delay)
        if stop.is_set() and deadline is None:
            deadline = time.monotonic() + finish_timeout
        try:
            client = client or client_for(mlog.load_state()["uri"])
            _, left = deliver(client, mlog, deadline)
        except Exception as e:
            if outage_since is None:
                outage_since = time.monotonic()
                log.warning("tracking: the store did not accept the metrics (%s: %.300s); training continues, "
                            "metrics are kept in %s and sent when it is back", type(e).__name__, e, mlog.path)
            delay, left = min(delay * 2, max_backoff), None
        else:
            if outage_since is not None:
                log.warning("tracking: the store is back after %.0f s; buffered metrics delivered",
                            time.monotonic() - outage_since)
                outage_since = None
            delay = flush_interval
        if deadline is not None:
            if left == 0:
                return 0
            if time.monotonic() + 0.5 > deadline:
                return left if left is not None else mlog.size() - mlog.load_state()["delivered"]
            if left is None:
                time.sleep(0.5)  # left > 0 without an error: artifacts re-queued for another pass


def main(argv=None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the trainer decides when the run ends (it closes our stdin)
    parser = argparse.ArgumentParser(prog="python -m gatscale.tracking.sender", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--finish-timeout", type=float, default=20.0)
    parser.add_argument("--max-backoff", type=float, default=60.0)
    parser.add_argument("--system-metrics", type=float, default=0.0, help="sampling interval in s (0: off)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="gatscale-tracker: %(message)s")
    configure_http_client()
    mlog = MetricsLog(args.run_dir)
    stop = threading.Event()
    sampler = start_system_metrics(mlog, args.system_metrics) if args.system_metrics else None

    def wait_for_eof():
        sys.stdin.buffer.read()
        if sampler is not None:
            sampler.stop()  # no samples after the trainer's last records
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    left = send_loop(mlog, stop, args.flush_interval, args.finish_timeout, args.max_backoff)
    mlog.close()
    return 0 if left == 0 else 1


def start_system_metrics(mlog: MetricsLog, interval: float):
    """Sample CPU/memory/GPU into metrics.jsonl at the last training step seen in it."""
    from .system_metrics import SystemMetricsSampler

    sampler = SystemMetricsSampler(lambda m: mlog.append({"t": now_ms(), "step": mlog.last_step, "metrics": m}),
                                   interval)
    sampler.start()
    return sampler


if __name__ == "__main__":
    sys.exit(main())
