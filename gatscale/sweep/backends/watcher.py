"""The scheduler's view of the jobs a sweep submitted (submitit's InfoWatcher habit): the only module that calls
squeue or sacct.

One poll asks about all the jobs at once: one `squeue` for the ones still queued or running, and, when the final
states are wanted (`gatscale status`), one `sacct` for the ended ones. Answers are kept for `min_interval_s`
(a poll at most that often); a final state is kept for good. A poll that fails (squeue errors or hangs) does not
crash anything: its jobs read "unknown" (taken as ended by the plan, as when squeue is absent), and the next
poll waits twice as long each time, up to `max_interval_s`. Jobs of submitit's local executor are asked
directly: their job id is the process id.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

UNKNOWN = "unknown"
GOING = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED", "COMPLETING", "CONFIGURING", "RESIZING")


class JobWatcher:
    def __init__(self, min_interval_s: float = 5.0, max_interval_s: float = 300.0, timeout_s: float = 30.0):
        self.min_interval_s, self.max_interval_s, self.timeout_s = min_interval_s, max_interval_s, timeout_s
        self._queued: dict[str, str] = {}     # squeue's answer at the last poll: {job id: state}
        self._ended: dict[str, str] = {}      # sacct's answers; a final one (not GOING) is never asked again
        self._asked: set[str] = set()         # the SLURM job ids the last squeue poll covered
        self._failed = 0                      # squeue polls failed in a row
        self._next_poll = 0.0

    def active(self, jobs: list[dict]) -> dict[str, str]:
        """{job id: state} of the given job records still queued or running (SLURM: squeue; the local executor:
        its process is alive). A job the scheduler could not be asked about is not listed."""
        self._poll_squeue([j["job_id"] for j in jobs if j.get("cluster") == "slurm"])
        active = {i: s for j in jobs if (i := j.get("job_id")) in self._queued and (s := self._queued[i]) != UNKNOWN}
        for j in jobs:
            if j.get("cluster") == "local" and j.get("job_id", "").isdigit():
                try:
                    os.kill(int(j["job_id"]), 0)
                    active[j["job_id"]] = "RUNNING (local)"
                except (ProcessLookupError, PermissionError):
                    pass
        return active

    def states(self, jobs: list[dict]) -> dict[str, str]:
        """active(jobs), plus the final state of ended SLURM jobs where accounting answers (sacct: COMPLETED,
        FAILED, TIMEOUT, ...), plus "unknown" for the jobs the last poll could not ask about."""
        states = self.active(jobs)
        slurm = [j["job_id"] for j in jobs if j.get("cluster") == "slurm"]
        unknown = {i: UNKNOWN for i in slurm if self._queued.get(i) == UNKNOWN}
        final = {i for i, s in self._ended.items() if s.partition(" ")[0] not in GOING}
        self._poll_sacct([i for i in slurm if i not in states and i not in unknown and i not in final])
        return {**states, **unknown, **{i: self._ended[i] for i in slurm if i in self._ended and i not in states}}

    def _poll_squeue(self, ids: list[str]):
        if not ids or not shutil.which("squeue"):
            return
        now = time.monotonic()
        if now < self._next_poll and (self._failed or set(ids) <= self._asked):
            for i in set(ids) - self._asked:  # backing off after a failure: new jobs are unknown too
                self._queued[i] = UNKNOWN
            return
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "--me"], capture_output=True, text=True,
                                 timeout=self.timeout_s, check=True).stdout
        except (subprocess.SubprocessError, OSError) as e:
            self._failed += 1
            self._queued = {i: UNKNOWN for i in ids}
            wait = min(self.min_interval_s * 2 ** self._failed, self.max_interval_s)
            print(f"gatscale sweep: warning: squeue failed ({e}); submitted jobs are taken as ended (next try in "
                  f"{wait:.0f} s)", flush=True)
        else:
            self._failed, wait = 0, self.min_interval_s
            listed = dict(line.split("|", 1) for line in out.split() if "|" in line)
            self._queued = {i: listed[i] for i in ids if i in listed}
        self._asked, self._next_poll = set(ids), now + wait

    def _poll_sacct(self, ids: list[str]):
        if not ids or not shutil.which("sacct"):
            return
        try:
            out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)],
                                 capture_output=True, text=True, timeout=self.timeout_s, check=True).stdout
        except (subprocess.SubprocessError, OSError):
            return  # no accounting: the run folders still say how far each run got
        self._ended.update(dict(line.split("|", 1) for line in out.split()
                                if "|" in line and line.split("|")[0] in ids))
