"""The Ray launchers of ``python -m experiments.train`` (hydra-ray-launcher, the optional extra
``ray``): ``hydra/launcher=ray`` (the plugin's own) and ``hydra/launcher=ray_cluster``
(``conf/hydra/launcher/ray_cluster.yaml``: a running cluster, without the ``object_store_memory``
that hydra-ray-launcher 1.2.2 adds and Ray refuses when it joins a cluster).

Always: the config file's settings. With the extra installed: the config composes with the
plugin's schema (a key outside it takes a ``+``), and a 2-job sweep through a local Ray cluster
writes the same table as the joblib launcher. Without it: either launcher is a configuration
error that names the extra to install.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "conf" / "hydra" / "launcher" / "ray_cluster.yaml"
TINY = ["level=coffee", "agent=q_learning", "total_steps=2000", "eval_every=1000", "eval_episodes=8",
        "save_policy=false"]
TIMING = ("wall_time", "train_time")
NO_EXTRA = 'the ray extra is not installed (pip install -e ".[ray]")'


def ray_extra_installed() -> bool:
    return importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None


def _env() -> dict:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def app(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def table(sweep: Path) -> pd.DataFrame:
    df = pd.read_csv(sweep / "results.csv")
    return df.drop(columns=list(TIMING)).sort_values(["run_id", "env_steps"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Always
# ---------------------------------------------------------------------------------------------

def test_the_config_extends_the_plugins_ray_and_joins_a_running_cluster():
    from experiments.jobs import THREAD_VARS

    cfg = OmegaConf.load(CONFIG)
    assert list(cfg.defaults) == ["ray"]  # the plugin's config, typed by its schema
    init = cfg.ray.init
    assert init.address == "auto"
    # the key must be there (null): 1.2.2 adds object_store_memory=78643200 when it is absent
    assert "object_store_memory" in init and init.object_store_memory is None
    assert cfg.ray.remote.num_cpus == 1
    assert set(init.runtime_env.env_vars) == set(THREAD_VARS)
    header = CONFIG.read_text().split("\ndefaults:", 1)[0]
    for said in ("hydra.launcher.ray.init.address=", "+hydra.launcher.ray.init.runtime_env.working_dir=.",
                 "hydra.sweep.dir=", "object_store_memory must not be provided", 'pip install -e ".[ray]"'):
        assert said in header, said


# ---------------------------------------------------------------------------------------------
# Without the extra: a configuration error naming it
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("launcher", ["ray_cluster", "ray"])
def test_without_the_extra_the_launcher_names_it(launcher, tmp_path):
    if ray_extra_installed():
        pytest.skip("the ray extra is installed: the launcher exists")
    proc = app("-m", f"hydra/launcher={launcher}", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY,
               timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "configuration error (nothing was run)" in proc.stderr
    assert 'pip install -e ".[ray]"' in proc.stderr, proc.stderr
    assert not (tmp_path / "sweep").exists()


# ---------------------------------------------------------------------------------------------
# With the extra
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def compose():
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason=NO_EXTRA)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    import experiments.config  # noqa: F401  (registers the structured configs)

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        yield lambda *overrides: hydra_compose(config_name="train", overrides=["hydra/launcher=ray_cluster",
                                                                               *overrides],
                                               return_hydra_config=True).hydra.launcher
    GlobalHydra.instance().clear()


def test_the_config_composes_with_the_plugins_schema(compose):
    from experiments.jobs import threads_per_job

    launcher = compose()
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    init = OmegaConf.to_container(launcher.ray.init, resolve=True)  # what ray.init() gets
    assert init["address"] == "auto" and init["object_store_memory"] is None
    assert set(init["runtime_env"]["env_vars"].values()) == {"1"}  # Ray wants strings
    assert threads_per_job(None, launcher) == 1

    launcher = compose("hydra.launcher.ray.init.address=ray://head:10001", "hydra.launcher.ray.remote.num_cpus=2",
                       "+hydra.launcher.ray.init.runtime_env.working_dir=.", "+hydra.launcher.ray.init.namespace=x",
                       "+hydra.launcher.ray.remote.memory=4000000000")
    init = OmegaConf.to_container(launcher.ray.init, resolve=True)
    assert init["address"] == "ray://head:10001" and init["namespace"] == "x"
    assert init["runtime_env"]["working_dir"] == "." and set(init["runtime_env"]["env_vars"].values()) == {"2"}
    assert launcher.ray.remote.memory == 4000000000 and threads_per_job(None, launcher) == 2


@pytest.mark.parametrize("override", ["hydra.launcher.ray.init.namespace=x",
                                      "hydra.launcher.ray.init.runtime_env.working_dir=."])
def test_a_ray_setting_outside_the_schema_takes_a_plus(compose, override):
    with pytest.raises(Exception, match=r"\+hydra\.launcher"):  # Hydra: "To append to your config use +..."
        compose(override)


@pytest.fixture
def local_ray_cluster():
    """The address of a Ray cluster started for the test (2 CPUs, its own ports), removed after;
    ``ray start``'s record of this machine's cluster (``address=auto``) is put back as it was."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason=NO_EXTRA)
    cluster_utils = pytest.importorskip("ray.cluster_utils", reason=NO_EXTRA)
    try:  # where `ray start` records the address
        from ray._common.utils import get_ray_address_file
        current = Path(get_ray_address_file(None))
    except ImportError:  # another Ray version: its usual place
        import tempfile

        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    before = current.read_text() if current.exists() else None
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False},
                                    shutdown_at_exit=True)
    try:
        yield cluster.address
    finally:
        cluster.shutdown()
        if before is not None:
            current.parent.mkdir(parents=True, exist_ok=True)
            current.write_text(before)
        else:
            with contextlib.suppress(FileNotFoundError):
                current.unlink()


def test_a_sweep_through_a_running_ray_cluster_matches_joblib(local_ray_cluster, tmp_path):
    args = ["-m", "seed=0,1", *TINY]
    ray = app(*args, "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={local_ray_cluster}",
              "+hydra.launcher.ray.init.namespace=stopbutton-test", f"hydra.sweep.dir={tmp_path / 'ray'}")
    out = ray.stdout + ray.stderr
    assert ray.returncode == 0, out[-4000:]
    assert "Connected to Ray cluster" in out and "'object_store_memory': None" in out, out[-4000:]
    assert "2 done, 0 skipped" in ray.stdout, out[-4000:]
    joblib = app(*args, "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path / 'joblib'}")
    assert joblib.returncode == 0, joblib.stderr[-4000:]
    a, b = table(tmp_path / "ray"), table(tmp_path / "joblib")
    assert list(a.columns) == list(b.columns) and len(a) == 2 * 2  # 2 runs x 2 evaluations
    pd.testing.assert_frame_equal(a, b)
