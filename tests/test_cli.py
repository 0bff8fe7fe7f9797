"""The `gatscale` entry point: its help lists every command on a line of its own."""
import pytest

from gatscale.cli import COMMANDS, main as gatscale_main


def test_help_lists_one_command_per_line(capsys):
    with pytest.raises(SystemExit):
        gatscale_main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    for name, (_, description) in COMMANDS.items():
        assert any(line.split()[:1] == [name] and line.rstrip().endswith(description) for line in lines), name


@pytest.mark.parametrize("argv", [["--help"], ["status", "s.yaml"]], ids=["help", "status"])
def test_a_closed_stdout_ends_the_command_quietly(tmp_path, argv):
    """`gatscale status SPEC | head -1`: the reader goes away before gatscale writes; no error, no traceback."""
    import os
    import subprocess
    import sys

    import yaml

    from train_fixtures import REPO, tiny_run_dict

    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "t", "base": tiny_run_dict(), "seeds": 40}))
    proc = subprocess.Popen([sys.executable, "-m", "gatscale.cli", *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.close()  # long before the interpreter has started
    err = proc.stderr.read()
    assert proc.wait(timeout=120) in (0, 141) and err == "", err
