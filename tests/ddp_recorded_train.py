"""`gatscale train CONFIG --run-dir DIR` under torchrun, recording what rank 0 logs and what each rank's train_step
returned, to RUN_DIR/rank<r>.json (for test_train.py's two-process test: the logged losses are the mean over ranks)."""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gatscale, as `python -m` would

import gatscale.tracking  # noqa: E402
from gatscale.cli import main as gatscale_main  # noqa: E402
from gatscale.train import trainer  # noqa: E402

config, run_dir = sys.argv[1:3]
per_step, logged = [], []
real_train_step = trainer.train_step


def recording_train_step(*args, **kwargs):
    stats = real_train_step(*args, **kwargs)
    per_step.append({k: stats[k].item() for k in ("loss/d", "loss/g")})
    return stats


class Recorder:
    run_id = None
    def start(self, *a): pass
    def log_metrics(self, metrics, step): logged.append((step, metrics))
    def log_artifact(self, *a, **k): pass
    def set_tags(self, tags): pass
    def finish(self, status): pass


trainer.train_step = recording_train_step
gatscale.tracking.build_tracker = lambda cfg: Recorder()
code = gatscale_main(["train", config, "--run-dir", run_dir])
(Path(run_dir) / f"rank{os.environ['RANK']}.json").write_text(json.dumps({"per_step": per_step, "logged": logged}))
sys.exit(code)
