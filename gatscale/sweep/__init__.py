"""Sweeps: one YAML spec per study -> its runs (spec.py) -> what to do with each (plan.py) -> a backend that
trains them (backends/: local, submitit, ray). Commands: `gatscale sweep` (cli.py), `gatscale status`
(status.py). docs/sweeps.md is the reference."""
