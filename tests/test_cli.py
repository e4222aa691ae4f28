import subprocess
import sys

from mlff.cli import main


def test_basis_command_prints_counts_and_functions(capsys):
    assert main(["basis", "--elements", "Si", "--max-degree", "1=6,2=8,3=9", "--list"]) == 0
    out = capsys.readouterr().out
    assert "correlation order 3" in out and "ν=3: Si(n=" in out


def test_basis_command_rejects_unknown_element(capsys):
    assert main(["basis", "--elements", "Si", "Zz"]) == 2
    assert "unknown element 'Zz'" in capsys.readouterr().err


def test_console_script_runs():
    done = subprocess.run(
        [sys.executable, "-m", "mlff.cli", "version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("mlff ")
