"""Live sweep progress from the run folders: rows, the terminal table, the line-per-interval log, status --watch."""
import io

from gatscale.cli import main as gatscale_main
from gatscale.sweep import status as status_module
from gatscale.sweep.progress import LiveProgress, run_progress
from gatscale.sweep.spec import load_spec
from gatscale.train.status import RunLock, write_status
from sweep_fixtures import two_run_spec

RUNNING = {"perf/images_per_s": 80.0, "perf/step_ms": 200.0, "fd_digits": 12.34, "loss/d": 1.0}


def test_a_running_run_shows_step_speed_eta_and_latest_fid(tmp_path):
    write_status(tmp_path, "running", 100, 250, metrics=RUNNING)
    assert run_progress("B2", tmp_path, 250) == ["B2", "running", "100/250", "80", "0m30s", "12.34 fd_digits"]
    assert run_progress("B2", tmp_path, 250, "queued")[1:5] == ["queued", "100/250", "80", ""]  # no ETA unless running
    assert run_progress("S2", tmp_path / "absent", 250, "queued") == ["S2", "queued", "0/250", "", "", ""]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_one_line_per_interval_on_one_the_table_is_redrawn(tmp_path):
    write_status(tmp_path, "running", 100, 250, metrics=RUNNING)
    rows = lambda: [run_progress("B2", tmp_path, 250, "running"), ["S2", "queued", "0/250", "", "", ""]]  # noqa: E731
    log = io.StringIO()
    live = LiveProgress(log, interval=3600)
    for _ in range(5):
        live.update(rows)
    live.update(rows, force=True)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("1 queued, 1 running | B2 100/250 80 img/s ETA 0m30s 12.34 fd_digits")

    screen = Terminal()
    live = LiveProgress(screen, interval=0)
    live.update(rows)
    live.message("  finished S2")
    live.update(rows)
    out = screen.getvalue()
    assert out.count("\033[4F\033[J") == 1  # the 4-line table (header, rule, 2 runs) erased before the message
    assert out.index("finished S2") < out.rindex("B2   running")


def test_status_watch_refreshes_until_every_run_has_ended(tmp_path, monkeypatch, capsys):
    spec_path = two_run_spec(tmp_path / "s.yaml")
    first, second = load_spec(spec_path, runs_dir=tmp_path / "runs").runs
    for run, state in ((first, "finished"), (second, "running")):
        run.run_dir.mkdir(parents=True)
        write_status(run.run_dir, state, 20 if state == "finished" else 5, 20, metrics=RUNNING)
    sleeps = []

    def sleep(seconds):  # the run elsewhere finishes while we wait
        sleeps.append(seconds)
        write_status(second.run_dir, "finished", 20, 20)
    monkeypatch.setattr(status_module.time, "sleep", sleep)
    with RunLock(second.run_dir):  # as its trainer holds it
        assert gatscale_main(["status", str(spec_path), "--runs-dir", str(tmp_path / "runs"), "--watch", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sleeps == [2.0] and len(lines) == 2
    assert "1 finished, 1 running" in lines[0] and "ETA 0m03s" in lines[0] and lines[1].endswith("2 finished")


def test_status_holds_a_run_that_needs_attention_and_says_where_an_interrupted_run_resumes(tmp_path, capsys):
    from gatscale.sweep.plan import plan
    spec_path = two_run_spec(tmp_path / "s.yaml")
    spec = load_spec(spec_path, runs_dir=tmp_path / "runs")
    held, lost = spec.runs
    for run in spec.runs:
        run.run_dir.mkdir(parents=True)
    line = f"{held.run_dir}: a checkpoint was written (step 10) but none is usable; ... (ckpt-0000010.pt: truncated)"
    write_status(held.run_dir, "preempted", 12, 20, checkpoint_step=10, attention=line)
    write_status(lost.run_dir, "running", 14, 20, checkpoint_step=10)  # its process is gone: it reached 14, saved 10

    assert [(p.state, p.action) for p in plan(spec)] == [("needs-attention", "hold"), ("interrupted", "resume")]
    assert gatscale_main(["status", str(spec_path), "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "needs-attention (hold)" in out and "ckpt-0000010.pt: truncated" in out
    assert "resumes from its checkpoint of step 10" in out
    assert gatscale_main(["sweep", str(spec_path), "--runs-dir", str(tmp_path / "runs"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert f"{held.name} needs attention, not relaunched: {line}" in err and lost.name not in err


def test_status_from_another_folder_finds_the_runs_of_the_spec_project(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / "sweeps").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    spec_path = two_run_spec(project / "sweeps" / "s.yaml")  # runs_dir: the default, runs (of the project)
    for run in load_spec(spec_path).runs:
        run.run_dir.mkdir(parents=True)
        write_status(run.run_dir, "finished", 20, 20)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert gatscale_main(["status", str(spec_path)]) == 0
    out = capsys.readouterr().out
    assert f"in {project / 'runs' / 't'}" in out and out.count("20/20") == 2 and "new" not in out


def test_status_of_a_study_without_a_folder_says_so_in_one_line(tmp_path, capsys):
    spec_path = two_run_spec(tmp_path / "s.yaml")
    assert gatscale_main(["status", str(spec_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"study t: 2 runs in {tmp_path / 'runs' / 't'}: no such folder yet (nothing has run "
                                f"there; `gatscale sweep {spec_path}` starts them, --runs-dir names another runs "
                                "folder)"]
