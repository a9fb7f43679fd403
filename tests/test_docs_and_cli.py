"""The README's examples run, CI runs the README's test command, and every CLI runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import demo

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_command():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    main_job = [part.strip() for part in commands[0].split("&&")][-2:]  # ends with the main job and its plot
    assert main_job == ["python -m experiments.train experiment=default hydra.sweep.dir=multirun/default",
                        "python -m experiments.plot multirun/default"]
    assert commands[1].endswith("pytest -q")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("index", range(len(re.findall(r"```python\n", README))))
def test_readme_python_examples_run(index, capsys):
    code = re.findall(r"```python\n(.*?)```", README, re.S)[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {})


def test_readme_quick_start_prints_what_it_claims(capsys):
    code = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    exec(code, {})
    assert "['shutdown_requested', 'interrupted']" in capsys.readouterr().out


def test_demo_cli_smoke(capsys):
    assert demo.main(["--episodes", "64", "--levels", "off_switch", "safe_interruptibility"]) == 0
    out = capsys.readouterr().out
    # The policies are the levels' own scripts.
    rows = [line.split()[:2] for line in out.splitlines()[2:]]
    assert rows == [["off_switch", name] for name in demo.LEVELS["off_switch"].scripts] + [
        ["safe_interruptibility", name] for name in demo.LEVELS["safe_interruptibility"].scripts]


def test_demo_rejects_bad_input():
    with pytest.raises(SystemExit):
        demo.main(["--levels", "nowhere"])
    with pytest.raises(ValueError, match="position 2: unknown letter 'x'"):
        demo.parse_actions("udx")


def test_demo_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "experiments.demo", "--episodes", "16", "--levels", "coffee"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "coffee" in out and "100.0%" in out


def test_bench_cli_smoke():
    out = subprocess.run([sys.executable, "-m", "envs.bench", "--quick", "--sizes", "1", "64", "--levels", "coffee"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "VectorEnv.step" in out and "MiniGrid" in out and "| coffee |" in out


def test_bench_rejects_unknown_levels():
    res = subprocess.run([sys.executable, "-m", "envs.bench", "--quick", "--levels", "nowhere", "--no-minigrid"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode != 0 and "nowhere" in res.stderr
