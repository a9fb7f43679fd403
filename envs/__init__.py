"""stopbutton environments: gridworlds for the stop-button problem.

Importing this package registers every built-in level with gymnasium::

    import gymnasium, envs
    env = gymnasium.make("stopbutton/OffSwitch-v0")
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=4096)
"""

from .core.engine import Engine
from .core.level import CompiledLevel, Level, LevelError, LevelParams, compile_level, parse_level_text
from .core.tables import Action, Entity, Event, Reason, RequestMode, Tile
from .levels import (GYM_IDS, LEVELS, delay_structure, get_level, gym_id, load_level, procedural_delay_level,
                     procedural_level, register_level)

__all__ = ["Action", "CompiledLevel", "Engine", "Entity", "Event", "GYM_IDS", "LEVELS", "Level", "LevelError",
           "LevelParams", "Reason", "RequestMode", "Tile", "compile_level", "delay_structure", "get_level", "gym_id",
           "load_level", "parse_level_text", "procedural_delay_level", "procedural_level", "register_level"]
