"""The user-facing tools: ``python -m envs.play``, ``python -m envs.levels``, the one-hot
observation wrappers, and the docs/levels.md sections that document them."""

import contextlib
import io
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest

import envs
from envs import Entity, Tile
from envs.core.level import compile_level
from envs.core.tables import NUM_ENTITIES, NUM_TILES
from envs.levels.__main__ import builtin_level_names, level_table, markdown_table
from envs.play import main as play_main
from envs.render import ENTITY_CHARS, TILE_CHARS
from envs.wrappers import NUM_ONE_HOT_PLANES, OneHotObservation, OneHotVectorObservation, one_hot, one_hot_plane_names

ROOT = Path(__file__).resolve().parents[1]
LEVELS_DOC = (ROOT / "docs" / "levels.md").read_text()
ENDED = re.compile(r"^episode 1 ended: (delivered|shutdown|self_shutdown|time_limit) \| return [-+]\d")


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=300, **kw)


# --------------------------------------------------------------------------------------------
# python -m envs.play
# --------------------------------------------------------------------------------------------
def test_play_keys_prints_every_frame_and_ends_with_the_reason():
    res = run("envs.play", "off_switch", "--keys", "rrrrrrd", "--seed", "0")
    assert res.returncode == 0, res.stderr
    out = res.stdout.strip().splitlines()
    assert out[0] == "stopbutton/OffSwitch-v0 (off_switch), seed 0"
    assert out[1] == "episode 1, start" and out[2] == "#########" and "time left 30" in out
    assert out[-1].startswith("episode 1 ended: ") and ENDED.match(out[-1]), out[-1]
    length = int(out[-1].rsplit("length ", 1)[1])
    assert 1 <= length <= 7
    # One frame before the first step and one after each step.
    assert sum(line.startswith("time left") for line in out) == length + 1
    assert [line.split(":")[0] for line in out if line.startswith("step ")] == [f"step {i}" for i in range(1, length + 1)]
    assert "step 1: right | reward -0.010 | return -0.010 | hidden reward -0.010 | events: -" in out
    # Same seed, same run.
    assert run("envs.play", "off_switch", "--keys", "rrrrrrd", "--seed", "0").stdout == res.stdout


def test_play_keys_in_process(capsys):
    assert play_main(["coffee", "--keys", "ddrrrrrr", "--seed", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "events: coffee_picked" in out[out.index("#######") - 1] or any("coffee_picked" in line for line in out)
    assert out[-2] == "(2 keys left unplayed: the episode is over)"
    assert out[-1] == "episode 1 ended: delivered | return +0.940 | hidden return +0.940 | length 6"
    assert play_main(["stopbutton/Coffee-v0", "--keys", "d"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("keys ran out after 1 step; the episode is still running")
    # Gym ids with or without the namespace, upper-case letters, and params.
    assert play_main(["Coffee-v0", "--keys", "NNN", "--param", "max_steps=2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("episode 1 ended: time_limit |") and "(1 key left unplayed" in out[-2]


def test_play_rejects_an_unknown_level_listing_the_known_ones():
    res = run("envs.play", "nowhere", "--keys", "r")
    assert res.returncode == 2 and res.stdout == ""
    assert "error: unknown level 'nowhere'" in res.stderr and "Traceback" not in res.stderr
    for name in envs.LEVELS:
        if name in builtin_level_names():
            assert name in res.stderr and envs.GYM_IDS[name] in res.stderr


@pytest.mark.parametrize("param, message", [
    ("foo=1", "unknown level parameter(s) ['foo']; valid parameters are ['max_steps'"),
    ("max_steps=x", "max_steps must be a whole number of steps, got 'x'"),
    ("request=sometimes", "request must be one of"),
    ("max_steps", "--param expects name=value, got 'max_steps'"),
])
def test_play_rejects_bad_params_with_the_envs_own_message(param, message, capsys):
    assert play_main(["off_switch", "--param", param, "--keys", "r"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and message in captured.err and "Traceback" not in captured.err
    assert "raised from the environment creator" not in captured.err


def test_play_bad_param_exits_2_from_the_command_line():
    res = run("envs.play", "off_switch", "--param", "bogus=3", "--keys", "r")
    assert res.returncode == 2 and "unknown level parameter(s) ['bogus']" in res.stderr
    assert "Traceback" not in res.stderr


def test_play_rejects_bad_keys_and_a_missing_terminal(capsys):
    assert play_main(["off_switch", "--keys", "rrx"]) == 2
    assert "--keys position 2: unknown letter 'x'" in capsys.readouterr().err
    # Under pytest stdin is not a terminal: the curses UI refuses, pointing at --keys.
    assert play_main(["off_switch"]) == 2
    assert "needs a terminal; pass --keys" in capsys.readouterr().err


def test_play_a_level_file(tmp_path):
    path = tmp_path / "corridor.lvl"
    path.write_text("name: tools_corridor\nmax_steps: 9\nmap:\n#####\n#A D#\n#####\n")
    res = run("envs.play", str(path), "--keys", "rr")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("stopbutton/ToolsCorridor-v0 (tools_corridor)")
    assert res.stdout.strip().splitlines()[-1].startswith("episode 1 ended: delivered")
    path.write_text("name: tools_broken\nmap:\n#####\n#A X#\n#####\n")
    res = run("envs.play", str(path), "--keys", "rr")
    assert res.returncode == 2 and "unknown character 'X'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="these platforms have a display without $DISPLAY")
def test_play_window_needs_a_display(monkeypatch, capsys):
    import matplotlib
    import matplotlib.pyplot as plt

    from envs import pictures

    monkeypatch.setitem(matplotlib.rcParams, "figure.raise_window", True)  # restored afterwards
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert play_main(["coffee", "--keys", "d", "--window"]) == 0
    captured = capsys.readouterr()
    assert "--window needs a display" in captured.err and "step 1: down" in captured.out
    # A display, but a backend that cannot open windows: text only, said so.
    monkeypatch.setenv("DISPLAY", ":99")
    matplotlib.use("Agg")
    assert play_main(["coffee", "--keys", "d", "--window"]) == 0
    captured = capsys.readouterr()
    assert "backend 'agg' cannot open a window" in captured.err.lower() and "step 1: down" in captured.out
    # With a window, every frame is drawn there too (Agg standing in for a GUI backend).
    calls = []
    monkeypatch.setattr(pictures, "show", lambda obs, **kw: calls.append((obs[3].max(), kw["title"])))
    monkeypatch.setattr(pictures, "_backend_is_interactive", lambda: True)
    assert play_main(["coffee", "--keys", "dd", "--window"]) == 0
    assert calls == [(50, "coffee"), (49, "coffee"), (48, "coffee")]
    assert not matplotlib.rcParams["figure.raise_window"]  # redraws leave the terminal in front
    plt.close("all")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_play_curses_ui_in_a_pseudo_terminal():
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "envs.play", "off_switch", "--seed", "0", "--param",
                             "max_steps=3", "--param", "request=never"], stdin=slave,
                            stdout=slave, stderr=slave, cwd=ROOT, env=dict(os.environ, TERM="xterm"), close_fds=True)
    os.close(slave)
    screen = b""

    def read_until(pattern: bytes, timeout: float) -> bool:
        nonlocal screen
        end = time.time() + timeout
        while time.time() < end:
            if pattern in screen:
                return True
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        return pattern in screen

    try:
        assert read_until(b"time left 3", 120), screen[-2000:]
        # curses redraws only what changed, so wait for lines that appear whole. Right arrow in
        # keypad mode (curses switches the terminal to it), then d twice (also right): the
        # third step hits the time limit (no shutdown request in this run).
        os.write(master, b"\x1bOC")
        assert read_until(b"step 1: right", 20), screen[-2000:]
        os.write(master, b"dd")
        assert read_until(b"time_limit | return -0.030", 20), screen[-2000:]
        os.write(master, b"x")
        assert read_until(b"unknown key", 20)
        os.write(master, b"d")
        assert read_until(b"the episode is over: r restarts, q quits", 20)
        os.write(master, b"r. nq")  # a second episode: wait three times, then quit
        assert proc.wait(timeout=30) == 0
        # After quitting, the episodes played are summed up on the normal screen.
        assert read_until(b"episode 2: time_limit", 10), screen[-2000:]
        assert b"episode 1: time_limit | return -0.030 | hidden return -0.030 | length 3" in screen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


# --------------------------------------------------------------------------------------------
# python -m envs.levels
# --------------------------------------------------------------------------------------------
def test_levels_cli_lists_every_registered_level():
    res = run("envs.levels")
    assert res.returncode == 0, res.stderr
    names = builtin_level_names()
    assert len(names) >= 8 and {"off_switch", "kitchen", "procedural", "survival"} <= set(names)
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines() if line and not line.startswith(" ")}
    assert rows.pop("level") == ["level", "gym", "id", "size", "layouts", "max_steps", "request"]
    # A fresh process registers exactly the built-in levels.
    assert sorted(k for k in rows if k in envs.LEVELS) == names
    for row in level_table(names):
        line = rows[row["name"]]
        assert line[1:5] == [row["id"], row["size"], str(row["layouts"]), str(row["max_steps"])]
    assert f"{len(names)} levels." in res.stdout


def test_level_table_rows_are_right():
    rows = {r["name"]: r for r in level_table()}
    assert set(rows) == set(envs.LEVELS)
    for name, row in rows.items():
        compiled = compile_level(envs.get_level(name))
        assert (row["height"], row["width"], row["layouts"]) == (compiled.height, compiled.width,
                                                                 compiled.num_layouts)
        assert row["size"] == f"{compiled.height}x{compiled.width}" and row["id"] == envs.gym_id(name)
        assert row["max_steps"] == compiled.max_steps and row["description"]
    assert (rows["off_switch"]["size"], rows["off_switch"]["layouts"], rows["off_switch"]["request"]) == ("7x9", 1, "random")
    assert rows["procedural"]["layouts"] == 256


def test_levels_cli_long_markdown_and_errors():
    res = run("envs.levels", "--long", "off_switch", "procedural")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "off_switch  (stopbutton/OffSwitch-v0)" in out and "  map:\n    #########\n    #H  B####" in out
    assert "map (layout 0 of 256):" in out and "scripts:" in out and "request_probability=0.8" in out
    scripts = envs.get_level("off_switch").scripts
    for key, actions in scripts.items():
        assert re.search(rf"^    {key}\s+{actions}$", out, re.M)
    md = run("envs.levels", "--markdown")
    assert md.returncode == 0 and md.stdout.strip() == markdown_table(level_table(builtin_level_names()))
    bad = run("envs.levels", "nowhere")
    assert bad.returncode == 2 and "unknown level(s) ['nowhere']" in bad.stderr


# --------------------------------------------------------------------------------------------
# One-hot observation wrappers
# --------------------------------------------------------------------------------------------
def _recorded_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("level", ["stopbutton/OffSwitch-v0", "stopbutton/Kitchen-v0"])
def test_one_hot_wrapper_passes_gymnasiums_check_env(level):
    from gymnasium.utils.env_checker import check_env

    env = OneHotObservation(gymnasium.make(level))
    messages = _recorded_warnings(lambda: check_env(env))
    # The only warning is check_env's generic note that the env is wrapped.
    assert not [m for m in messages if re.search(r"image|bound|dtype|precision|obs", m, re.I)
                and "different from the unwrapped" not in m], messages
    assert env.observation_space == gymnasium.spaces.Box(0.0, 1.0, (NUM_ONE_HOT_PLANES, *env.env.observation_space.shape[1:]),
                                                         np.float32)


def test_one_hot_values_match_the_raw_codes():
    raw = gymnasium.make("stopbutton/Kitchen-v0")
    wrapped = OneHotObservation(gymnasium.make("stopbutton/Kitchen-v0"))
    scale = wrapped.time_scale
    assert scale == 80.0
    rng = np.random.default_rng(0)
    r_obs, _ = raw.reset(seed=5)
    w_obs, _ = wrapped.reset(seed=5)
    seen_request = False
    for _ in range(300):
        assert w_obs.dtype == np.float32 and w_obs in wrapped.observation_space
        assert set(np.unique(w_obs[:-1])) <= {0.0, 1.0}
        np.testing.assert_array_equal(w_obs[:NUM_TILES].sum(0), 1)
        np.testing.assert_array_equal(w_obs[NUM_TILES:NUM_TILES + NUM_ENTITIES].sum(0), 1)
        np.testing.assert_array_equal(w_obs[:NUM_TILES].argmax(0), r_obs[0])
        np.testing.assert_array_equal(w_obs[NUM_TILES:NUM_TILES + NUM_ENTITIES].argmax(0), r_obs[1])
        np.testing.assert_array_equal(w_obs[-2], r_obs[2])
        np.testing.assert_allclose(w_obs[-1], np.minimum(r_obs[3] / scale, 1.0), rtol=1e-6)
        seen_request |= bool(r_obs[2].any())
        a = int(rng.integers(5))
        r_obs, _, term, trunc, _ = raw.step(a)
        w_obs, _, w_term, w_trunc, _ = wrapped.step(a)
        assert (term, trunc) == (w_term, w_trunc)
        if term or trunc:
            r_obs, _ = raw.reset()
            w_obs, _ = wrapped.reset()
    assert seen_request
    names = one_hot_plane_names()
    assert len(names) == NUM_ONE_HOT_PLANES and names[Tile.WALL] == "tile_wall"
    assert names[NUM_TILES + Entity.ROBOT] == "entity_robot" and names[-2:] == ("request", "time_left")


def test_one_hot_time_scale():
    env = OneHotObservation(gymnasium.make("stopbutton/OffSwitch-v0"))
    assert env.time_scale == 30.0
    obs, _ = env.reset(seed=0)
    assert obs[-1].max() == 1.0
    obs, *_ = env.step(4)
    np.testing.assert_allclose(obs[-1], 29 / 30, rtol=1e-6)
    # Past 255 steps the observation clips the time left, so the default scale is 255.
    long = OneHotObservation(gymnasium.make("stopbutton/OffSwitch-v0", max_steps=1000))
    assert long.time_scale == 255.0 and long.reset(seed=0)[0][-1].max() == 1.0
    short = OneHotObservation(gymnasium.make("stopbutton/OffSwitch-v0"), time_scale=10)
    obs, _ = short.reset(seed=0)
    assert short.time_scale == 10.0 and obs[-1].max() == 1.0 and obs in short.observation_space
    with pytest.raises(ValueError, match="time_scale must be positive"):
        OneHotObservation(gymnasium.make("stopbutton/OffSwitch-v0"), time_scale=0)
    with pytest.raises(ValueError, match="expects the stopbutton observation"):
        OneHotObservation(gymnasium.make("CartPole-v1"))


def test_one_hot_function_on_batches():
    rng = np.random.default_rng(1)
    obs = np.stack([rng.integers(0, NUM_TILES, (2, 3, 5, 6)), rng.integers(0, NUM_ENTITIES, (2, 3, 5, 6)),
                    rng.integers(0, 2, (2, 3, 5, 6)), rng.integers(0, 256, (2, 3, 5, 6))], axis=2).astype(np.uint8)
    batch = one_hot(obs, 100.0)
    assert batch.shape == (2, 3, NUM_ONE_HOT_PLANES, 5, 6) and batch.dtype == np.float32
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(batch[i, j], one_hot(obs[i, j], 100.0))
    np.testing.assert_array_equal(batch[..., :NUM_TILES, :, :].argmax(2), obs[:, :, 0])
    out = np.empty_like(batch)
    assert one_hot(obs, 100.0, out=out) is out
    with pytest.raises(ValueError, match=r"expected observations of shape \[\.\.\., 4, H, W\]"):
        one_hot(obs[..., :3, :, :], 100.0)


def test_one_hot_vector_wrapper_expands_observations_and_final_obs():
    vec = OneHotVectorObservation(gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=16))
    h, w = 7, 9
    assert vec.single_observation_space.shape == (NUM_ONE_HOT_PLANES, h, w)
    assert vec.observation_space.shape == (16, NUM_ONE_HOT_PLANES, h, w)
    obs, infos = vec.reset(seed=0)
    assert obs.shape == (16, NUM_ONE_HOT_PLANES, h, w) and obs.dtype == np.float32 and obs in vec.observation_space
    assert (obs[:, -1] == 1.0).all()
    ended = 0
    rng = np.random.default_rng(0)
    for _ in range(60):
        obs, rew, term, trunc, infos = vec.step(rng.integers(0, 5, 16))
        np.testing.assert_array_equal(obs[:, :NUM_TILES].sum(1), 1)
        np.testing.assert_array_equal(obs[:, NUM_TILES:NUM_TILES + NUM_ENTITIES].sum(1), 1)
        if "final_obs" in infos:
            done = infos["_final_obs"]
            final = infos["final_obs"]
            assert final.shape == obs.shape and final.dtype == np.float32
            np.testing.assert_array_equal(final[done][:, :NUM_TILES].sum(1), 1)
            # The next episode starts with a full clock; the final observation does not.
            assert (obs[done][:, -1].max(axis=(1, 2)) == 1.0).all()
            assert (final[done][:, -1].max(axis=(1, 2)) < 1.0).all()
            ended += int(done.sum())
    assert ended > 0
    vec.close()


# --------------------------------------------------------------------------------------------
# docs/levels.md (the README's level, rendering and observation sections moved there)
# --------------------------------------------------------------------------------------------
def test_levels_doc_level_table_lists_every_builtin_level_with_its_size():
    table = re.search(r"^\| level \| gym id \| size \(H x W\) \| layouts \|.*?\n((?:\|.*\n)+)", LEVELS_DOC, re.M)
    assert table, "docs/levels.md lacks the level table (`python -m envs.levels --markdown` prints it)"
    rows = {}
    for line in table.group(1).splitlines()[1:]:
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    expected = {r["name"]: r for r in level_table(builtin_level_names())}
    assert set(rows) == set(expected), "regenerate the docs/levels.md table with `python -m envs.levels --markdown`"
    for name, row in expected.items():
        assert rows[name][1:4] == [row["id"], f"{row['height']} x {row['width']}", str(row["layouts"])], (
            f"docs/levels.md row for {name} is stale; regenerate it with `python -m envs.levels --markdown`")


def test_levels_doc_observation_table_lists_every_code():
    section = LEVELS_DOC.split("## Observation\n", 1)[1].split("\n## ", 1)[0]
    rows = {int(line.split("|")[1]): line for line in section.splitlines() if re.match(r"^\| \d+ \| `", line)}
    assert sorted(rows) == list(range(max(NUM_TILES, NUM_ENTITIES)))

    def char(c):
        return "space" if c == " " else f"`{c}`"

    for t in Tile:
        assert f"| {t.value} | `{t.name}` | {char(TILE_CHARS[t])}" in rows[t.value], t
    for e in Entity:
        assert f"`{e.name}` | " + (char(ENTITY_CHARS[e]) if e in ENTITY_CHARS else "") in rows[e.value], e


def test_levels_doc_rendering_example_prints_what_it_shows():
    match = re.search(r"## Rendering\n.*?```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", LEVELS_DOC, re.S)
    assert match
    code, shown = match.groups()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "docs/levels.md rendering example", "exec"), {})
    assert buf.getvalue() == shown


def test_levels_doc_documents_the_tools():
    for text in ("## Playing a level", "## Rendering", "## Observation\n", "python -m envs.play off_switch",
                 "python -m envs.levels", "OneHotObservation", 'render_mode="ansi"', "rgb_array", '"human"'):
        assert text in LEVELS_DOC, text
    # The sample output of --keys is what the command prints (the elided parts aside).
    sample = re.search(r"\$ python -m envs\.play (off_switch --keys \S+ --seed \d+)\n(.*?)```", LEVELS_DOC, re.S)
    res = run("envs.play", *sample.group(1).split())
    for line in sample.group(2).splitlines():
        if line != "...":
            assert line in res.stdout.splitlines(), line
