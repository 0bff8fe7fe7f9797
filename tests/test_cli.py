"""The `gatscale` entry point: its help lists every command on a line of its own."""
import pytest

from gatscale.cli import COMMANDS, main as gatscale_main


def test_help_lists_one_command_per_line(capsys):
    with pytest.raises(SystemExit):
        gatscale_main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    for name, (_, description) in COMMANDS.items():
        assert any(line.split()[:1] == [name] and line.rstrip().endswith(description) for line in lines), name
