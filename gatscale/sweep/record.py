"""`sweep.json`: what the sweep remembers about one run folder, and the only module that reads or writes it.

    study, name, config_hash   which run of which study this folder holds (a changed hash is a conflict)
    failures                   one id per failed launch: `status@<time>` (from status.json) or `exit<code>@<time>`
    jobs                       the jobs submitted for it: {backend, cluster, job_id, folder, submitted}
    prepared                   when a launch last wrote config.yaml here
    not_started                why the last launch could not start it on its machine (None once prepared)

Every write replaces the whole file atomically, so a killed sweep leaves the old record or the new one.
"""
from __future__ import annotations

import json
from pathlib import Path

from gatscale.core.atomic import atomic_write_text

RECORD_FILE = "sweep.json"


def read_record(run_dir: Path) -> dict:
    """The folder's record; {} when it has none (or an unreadable one: the run folder's own files decide)."""
    try:
        return json.loads((Path(run_dir) / RECORD_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def update_record(run_dir: Path, **changes) -> dict:
    record = read_record(run_dir)
    record.update(changes)
    atomic_write_text(Path(run_dir) / RECORD_FILE, json.dumps(record, indent=1))
    return record


def failures(record: dict, status: dict | None = None) -> list[str]:
    """The failures recorded so far plus the one status.json shows now (if it shows one), sorted."""
    ids = set(record.get("failures", []))
    if status and status.get("status") == "failed":
        ids.add(f"status@{status.get('updated')}")
    return sorted(ids)


def note_failure(run_dir: Path, failure_id: str) -> int:
    """Record one failure (idempotent per id); returns the number of failures of the run."""
    ids = sorted(set(failures(read_record(run_dir))) | {failure_id})
    update_record(run_dir, failures=ids)
    return len(ids)


def add_job(run_dir: Path, job: dict):
    """Append a submitted job ({backend, cluster, job_id, folder, submitted})."""
    update_record(run_dir, jobs=(read_record(run_dir).get("jobs") or []) + [job])


def last_job(record: dict) -> dict | None:
    jobs = record.get("jobs") or []
    return jobs[-1] if jobs else None
