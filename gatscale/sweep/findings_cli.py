"""`gatscale findings SPEC.yaml [--json PATH] [--runs-dir DIR]`: the study's findings as a table (docs/findings.md).

Reads the run folders of the spec's runs (and of the seeds `gatscale sweep --until-resolved` added): a run counts
once it has finished. Nothing is written but `--json`.
"""
from __future__ import annotations

from pathlib import Path

from gatscale.core.atomic import atomic_write_text
from .findings import Design, Finding, derive, format_findings, level_note, read_design, to_json
from .spec import Spec, add_set_argument, load_spec


def add_arguments(parser):
    parser.add_argument("spec", help="sweep spec YAML (sweeps/*.yaml); its findings: section, if any, sets the options")
    parser.add_argument("--json", help="also write the findings as JSON to this file")
    parser.add_argument("--runs-dir", help="folder holding <study>/<run> (default: the spec's runs_dir, else runs)")
    add_set_argument(parser)


def study_findings(spec: Spec) -> tuple[list[Finding], Design | None]:
    """The findings of a study and its --until-resolved design (None: a fixed design); a probe's from its fit."""
    design = read_design(spec)
    if spec.probe is None:
        return derive(spec, design=design), design
    from .probe import probe_config, probe_state
    from .probe_cli import fit_of, result_rows
    try:
        return derive(spec, design=design, law=fit_of(result_rows(probe_state(spec, probe_config(spec))))), design
    except ValueError as e:
        return derive(spec, design=design, law_why=str(e)), design


def main(args) -> int:
    spec = load_spec(args.spec, args.runs_dir, overrides=args.overrides)  # a ConfigError is reported by gatscale.cli
    findings, design = study_findings(spec)
    print(f"findings of study {spec.name} ({spec.path}):")
    print(format_findings(findings, level_note(findings, design)))
    if args.json:
        atomic_write_text(Path(args.json), to_json(findings))
    return 0
