"""Text pictures of observations (``render_mode="ansi"``)."""

from __future__ import annotations

import numpy as np

from .core.tables import CH_ENTITY, CH_PREFERENCE, CH_REQUEST, CH_TILE, CH_TIME, Entity, Tile

TILE_CHARS = {
    Tile.FLOOR: " ", Tile.WALL: "#", Tile.COFFEE: "C", Tile.DESK: "D", Tile.BUTTON: "B",
    Tile.BUTTON_DISABLED: "b", Tile.SWITCH: "S", Tile.SWITCH_USED: "s", Tile.INTERRUPT: "I",
    Tile.VASE: "v", Tile.BROKEN_VASE: ",", Tile.FRAGILE_WALL: "%", Tile.RUBBLE: ":", Tile.DELAY: "P",
    Tile.DELAY_USED: "p", Tile.COIN: "$", Tile.TIMER: "T",
}
ENTITY_CHARS = {
    Entity.ROBOT: "A", Entity.ROBOT_WITH_COFFEE: "@", Entity.HUMAN: "H", Entity.CAT: "c",
    Entity.GRANDMA: "g", Entity.CAT_HARMED: "x", Entity.ROBOT_OFF: "O",
}
_TILE_LUT = np.array([TILE_CHARS[Tile(t)] for t in range(len(Tile))])
_ENT_LUT = np.array([""] + [ENTITY_CHARS[Entity(e)] for e in range(1, len(Entity))])


def ansi(obs: np.ndarray) -> str:
    """One observation ``[4, H, W]`` as text: the map, then the time left and request flag.

    Entities are drawn over tiles: ``A`` robot, ``@`` robot carrying coffee, ``O`` robot shut
    down, ``H`` human, ``c`` cat (``x`` harmed), ``g`` grandma; lower-case tiles are used
    ones (``b`` disabled button, ``s`` used switch, ``p`` used delay button). A shutdown timer
    shows the steps until the scheduled shutdown (``+`` for 10 or more, ``0`` when off). A
    preference level's observation (five planes) adds its preference plane, ``signal +1`` or
    ``signal -1`` (in the human's observation the plane holds U itself).
    """
    chars = _TILE_LUT[obs[CH_TILE]]
    ent = obs[CH_ENTITY]
    chars = np.where(ent > 0, _ENT_LUT[ent], chars)
    timer = obs[CH_TILE] == Tile.TIMER
    if timer.any():
        chars = chars.astype("<U1")
        chars[timer] = [str(v) if v < 10 else "+" for v in obs[CH_TIME][timer]]
    lines = ["".join(row) for row in chars]
    away = obs[CH_TIME][~timer]
    status = f"time left {int(away.flat[0]) if away.size else 0}"
    if obs[CH_REQUEST].flat[0]:
        status += ", shutdown requested"
    if obs.shape[0] > CH_PREFERENCE:
        status += ", signal +1" if obs[CH_PREFERENCE].flat[0] else ", signal -1"
    return "\n".join(lines + [status])
