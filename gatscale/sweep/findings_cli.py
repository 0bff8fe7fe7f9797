"""`gatscale findings SPEC.yaml [--json PATH] [--runs-dir DIR]`: the study's findings as a table (docs/findings.md).

Reads the run folders of the spec's runs (and of the seeds `gatscale sweep --until-resolved` added): a run counts
once it has finished. Nothing is written but `--json`.
"""
from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_text
from .findings import derive, format_findings, level_note, read_design, to_json
from .spec import load_spec


def add_arguments(parser):
    parser.add_argument("spec", help="sweep spec YAML (sweeps/*.yaml); its findings: section, if any, sets the options")
    parser.add_argument("--json", help="also write the findings as JSON to this file")
    parser.add_argument("--runs-dir", help="folder holding <study>/<run> (default: the spec's runs_dir, else runs)")


def main(args) -> int:
    spec = load_spec(args.spec, args.runs_dir)  # a ConfigError is reported by gatscale.cli
    design = read_design(spec)
    findings = derive(spec, design=design)
    print(f"findings of study {spec.name} ({spec.path}):")
    print(format_findings(findings, level_note(findings, design)))
    if args.json:
        atomic_write_text(Path(args.json), to_json(findings))
    return 0
