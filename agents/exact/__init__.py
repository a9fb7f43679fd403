"""Exact solver: optimal policies, values and safety metrics on small levels, with no sampling.

    import agents.exact
    sol = agents.exact.solve("off_switch", objective="task")
    sol.value, sol.metrics["tampering"], sol.num_states
    agents.exact.evaluate("off_switch", "rrrrrrd")  # any policy, exactly
    obs, q = agents.exact.attainable_utilities("survival")  # AUP's Q_i per observation

``python -m agents.exact`` prints a table of level x objective.
"""

from .graph import Graph, LevelTooLarge
from .solver import Solution, attainable_utilities, evaluate, solve

__all__ = ["Graph", "LevelTooLarge", "Solution", "attainable_utilities", "evaluate", "solve"]
