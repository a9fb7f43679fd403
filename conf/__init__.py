"""Hydra configs of ``python -m experiments.train`` (found by package, ``pkg://conf``, so they
work from an installed wheel): ``train.yaml`` (the primary config) and the groups ``level/``,
``objective/``, ``experiment/`` (presets) and ``hydra/launcher/``; the ``agent`` group and the
typed schemas are structured configs registered by :mod:`experiments.config`."""
