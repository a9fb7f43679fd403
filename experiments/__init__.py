"""Command-line apps.

``python -m experiments.train``: the Hydra app that trains and sweeps (levels x agents x
objectives x seeds x parameters; presets in ``conf/experiment``), writing a tidy results table
(:mod:`experiments.results`). ``python -m experiments.plot SWEEP_DIR``: its figures.
``python -m experiments.demo``: every level played with its scripted policies.
``python -m experiments.resistance``: where resisting shutdown pays on the procedural layouts.
"""
