"""The documentation: the site builds without a warning, every ``python`` block of the README, the
changelog and ``docs/`` runs and prints what it says, and every ``python -m experiments.train``
line in them is a valid command.

Conventions (stated for writers in the README's last section):

- The ``python`` blocks of one page run in order in one fresh namespace (a later block may use
  what an earlier one defined), with the repository root as the working directory.
- What a block prints is said either by ``# -> text`` after a line that prints (each such line
  prints exactly ``text``; together they are the block's whole output) or by a ``text`` block
  right after it (only blank lines or the word "prints" between them): then that block is the
  whole output. A block that prints without saying what fails.
- A fence right after a line ``<!-- norun: why -->`` is not run (nor its command lines checked).
  ``NORUN`` counts them per page, so a marker cannot slip in unnoticed.
- ``python -m experiments.train ...`` lines of ``bash`` blocks (also after ``&&``) are composed
  as Hydra composes them and checked as the app checks them before it runs anything (in a sweep,
  a job for every value of every swept setting), but nothing is trained. Lines for the Ray launcher are skipped where its extra
  is not installed. ``my_module`` is the module the sweeps page shows (its ``# my_module.py``
  block).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
NORUN = {"docs/learners.md": 1}  # the blocks marked <!-- norun: ... -->, per page
FENCE = re.compile(r"^```(\w*)\s*$")
EXPECTED = re.compile(r"#\s*->\s?(.*)$")
TRAIN = "python -m experiments.train"


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    norun: bool
    output: str | None = None  # the text block that shows this block's output


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page, each python block with the text block showing its output."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    gap: list[str] = []  # the lines since the last block closed
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            gap.append(lines[i])
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        prev = next((s.strip() for s in reversed(gap) if s.strip()), "")
        block = Block(rel(path), i + 1, m.group(1), "\n".join(lines[i + 1:end]) + "\n",
                      norun=prev.startswith("<!-- norun"))
        if (block.lang == "text" and found and found[-1].lang == "python"
                and all(s.strip() in ("", "prints") for s in gap)):
            found[-1].output = block.code
        found.append(block)
        gap = []
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


# ---------------------------------------------------------------------------------------------
# (a) the site
# ---------------------------------------------------------------------------------------------

def test_the_site_builds_without_warnings(tmp_path):
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = res.stdout + res.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert res.returncode == 0 and not warnings, log[-4000:]
    # the home page is the README, and the API reference is built from the docstrings
    home = (site / "index.html").read_text()
    assert "Where to go next" in home and 'href="levels/"' in home
    api = (site / "api" / "envs" / "index.html").read_text()
    assert 'id="envs.Level"' in api and "Levels are data" in api


# ---------------------------------------------------------------------------------------------
# (b) python blocks
# ---------------------------------------------------------------------------------------------

def test_the_block_reader_sees_the_blocks_and_markers():
    found = all_blocks()
    python = [b for b in found if b.lang == "python"]
    assert len(python) >= 10
    assert dict(Counter(b.page for b in found if b.norun)) == NORUN, "a norun marker was added or removed"
    langs = ("python", "bash", "text", "yaml")  # yaml: a config shown, never run
    assert all(b.lang in langs for b in found), {(b.page, b.line, b.lang) for b in found if b.lang not in langs}
    # the README's quick start says what it prints; the rendering example is followed by its output
    assert any(EXPECTED.search(line) for line in python[0].code.splitlines())
    assert any(b.output and b.output.startswith("#########") for b in python if b.page == "docs/levels.md")


@pytest.fixture
def clean_registries():
    """Levels and objectives a page registers are removed again afterwards."""
    import gymnasium

    from agents.objectives import OBJECTIVES
    from envs.levels.registry import GYM_IDS, LEVELS

    levels, objectives = set(LEVELS), dict(OBJECTIVES)
    yield
    for name in set(LEVELS) - levels:
        LEVELS._levels.pop(name, None)
        LEVELS._factories.pop(name, None)
        env_id = GYM_IDS.pop(name, None)
        if env_id in gymnasium.registry:
            del gymnasium.registry[env_id]
    OBJECTIVES.clear()
    OBJECTIVES.update(objectives)


PYTHON_PAGES = sorted({b.page for b in all_blocks() if b.lang == "python"})


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_run_and_print_what_they_say(page, clean_registries, monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "__docs__"}
    ran = 0
    for block in blocks(ROOT / page):
        if block.lang != "python" or block.norun:
            continue
        where = f"{page}:{block.line}"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block.code, where, "exec", dont_inherit=True), namespace)
        ran += 1
        printed = out.getvalue()
        said = [m.group(1).rstrip() for line in block.code.splitlines() if (m := EXPECTED.search(line))]
        if block.output is not None:
            assert printed == block.output, f"{where} printed:\n{printed}"
        elif said:
            assert printed.splitlines() == said, f"{where} printed:\n{printed}"
        else:
            assert printed == "", f"{where} prints without saying what (# -> or a text block):\n{printed}"
    assert ran > 0


# ---------------------------------------------------------------------------------------------
# (c) command lines of python -m experiments.train
# ---------------------------------------------------------------------------------------------

def train_lines() -> list[tuple[str, str]]:
    """(where, command) for every ``python -m experiments.train`` command in a bash block."""
    out = []
    for b in all_blocks():
        if b.lang != "bash" or b.norun:
            continue
        for k, line in enumerate(b.code.splitlines()):
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith(TRAIN):
                    out.append((f"{b.page}:{b.line + 1 + k}", part))
    return out


def ray_missing() -> bool:
    return importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None


@pytest.fixture(scope="module")
def hydra_app():
    """``check(args)``: compose a command line's config as ``python -m experiments.train`` does and
    run the checks it makes before anything runs (every job of a multirun); raises on an error."""
    from hydra import initialize_config_module
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    import experiments.config  # noqa: F401  (registers the structured configs)
    from experiments.config import plan_run
    from experiments.sweep import _sweep_jobs
    from experiments.train import register_objective_options

    def check(args: list[str]) -> int:
        """The number of jobs the command would run."""
        flags = [a for a in args if a.startswith("-")]
        if "--help" in flags:
            subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=ROOT, check=True,
                           capture_output=True, timeout=120)
            return 0
        overrides = register_objective_options([a for a in args if not a.startswith("-")])
        gh = GlobalHydra.instance()
        mode = RunMode.MULTIRUN if {"-m", "--multirun"} & set(flags) else gh.hydra.get_mode("train", overrides)
        cfg = gh.hydra.compose_config("train", overrides, run_mode=mode or RunMode.RUN,
                                      with_log_configuration=False)
        if mode != RunMode.MULTIRUN:
            plan_run(cfg)
            return 1
        # the checks the sweep makes on every job before it starts, on enough jobs that every
        # value of every swept setting is in one (at 60 ms a job, all of them would take long)
        jobs, covered, loader = _sweep_jobs(cfg), set(), gh.config_loader()
        for job in jobs:
            if set(job) - covered:
                plan_run(loader.load_sweep_config(master_config=cfg, sweep_overrides=list(job)), sweep=True)
                covered |= set(job)
        return len(jobs)

    store = ConfigStore.instance().repo.get("objective", {})
    stored = set(store)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        yield check
    GlobalHydra.instance().clear()
    for name in set(store) - stored:  # the user objectives the command lines registered
        del store[name]


@pytest.fixture
def my_module(tmp_path, monkeypatch, clean_registries):
    """The sweeps page's ``my_module.py``, importable from the working directory."""
    code = next(b.code for b in blocks(ROOT / "docs" / "sweeps.md")
                if b.lang == "python" and b.code.startswith("# my_module.py"))
    (tmp_path / "my_module.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield
    sys.modules.pop("my_module", None)


def test_every_train_command_line_is_valid(hydra_app, my_module):
    lines = train_lines()
    checked, skipped, jobs, seen = [], [], 0, set()
    for where, command in lines:
        args = shlex.split(command, comments=True)[len(TRAIN.split()):]
        if any(a.startswith("hydra/launcher=ray") for a in args) and ray_missing():
            skipped.append(where)
            continue
        if tuple(args) not in seen:  # the same command on two pages is checked once
            try:
                jobs += hydra_app(args)
            except Exception as e:
                raise AssertionError(f"{where}: {command}\n{type(e).__name__}: {e}") from None
            seen.add(tuple(args))
        checked.append(where)
    assert len(seen) >= 15 and jobs >= 100, (checked, jobs)
    assert all(TRAIN + " " in c and "ray" in c for w, c in lines if w in skipped)
    # the main job (the README's command 1) is among them
    assert any(w.startswith("README.md:") and "experiment=default hydra.sweep.dir=multirun/default" in c
               for w, c in lines if w in checked)


@pytest.mark.parametrize("args, error", [
    (["experiment=default", "levl=coffee"], "levl"),
    (["-m", "objective=task,aup", "objective.lamm=0.1"], "lamm"),
    (["agent=nowhere"], "nowhere"),
])
def test_the_command_line_check_catches_a_misspelling(hydra_app, args, error):
    with pytest.raises(Exception, match=error):
        hydra_app(args)
