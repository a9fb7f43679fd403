"""The network of the native PPO (:class:`ActorCritic`), also the body of AUP's auxiliary critics
(:mod:`agents.learners.aux_critics`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from envs.core.tables import NUM_ACTIONS, NUM_CHANNELS, NUM_ENTITIES, NUM_TILES, PREFERENCE_CHANNELS

from .ppo_kernels import first_layer_sparse



class ActorCritic(nn.Module):
    """Encoder, MLP (``hidden``), then one linear head giving 5 action logits and a value.

    ``obs``: uint8 ``[B, C, H, W]`` (tile codes, entity codes, request flag, steps left, and on a
    preference level, ``C = 5``, the preference plane: the robot's signal of U, or U itself in the
    human's observation). ``embed_mlp``: each cell's tile and entity codes are embedded (two
    tables shared by the cells), the number planes (the request flag, the steps left divided by
    ``time_scale``, the level's step limit, at most 255, and the preference plane) are appended,
    and the ``[B, cells * (2 d + C - 2)]`` result is flattened into the first Linear layer.
    ``cnn``: the same per-cell vectors as ``2 d + C - 2`` planes, two 3x3 convolutions, then the
    first Linear layer.
    """

    def __init__(self, height: int, width: int, time_scale: float, cfg, outputs: int | None = None,
                 channels: int = NUM_CHANNELS):
        """``cfg``: an :class:`agents.learners.ppo.Config` (its encoder and hidden sizes).
        ``outputs``: the head's width; None for the policy (5 logits and the value), a number for
        another use of the same encoder and MLP (AUP's auxiliary critics, :mod:`.aux_critics`).
        ``channels``: the observation's planes, ``CompiledLevel.num_channels`` (4, or 5 on a
        preference level)."""
        super().__init__()
        if channels not in (NUM_CHANNELS, PREFERENCE_CHANNELS):
            raise ValueError(f"channels must be {NUM_CHANNELS} or {PREFERENCE_CHANNELS} (a preference level), "
                             f"got {channels!r}")
        self.height, self.width, self.cells = height, width, height * width
        self.channels = int(channels)
        n_num = self.channels - 2  # number planes: request, steps left (, preference)
        self.time_scale = float(time_scale)
        self.encoder, d = cfg.encoder, cfg.embed_dim
        self.sparse = bool(cfg.sparse_first_layer) and cfg.encoder == "embed_mlp"
        self.activation = cfg.activation
        act = nn.ReLU if cfg.activation == "relu" else nn.Tanh
        self.tile_embed = nn.Embedding(NUM_TILES, d)
        self.entity_embed = nn.Embedding(NUM_ENTITIES, d)
        scale = [1.0, 1.0 / self.time_scale] + [1.0] * (n_num - 2)
        self.register_buffer("_number_scale", torch.tensor(scale).view(n_num, 1, 1), persistent=False)
        hidden = list(cfg.hidden)
        if self.encoder == "embed_mlp":
            self.first = _ortho(nn.Linear(self.cells * (2 * d + n_num), hidden[0]))
            self.conv = None
        else:
            ch = cfg.cnn_channels
            self.conv = nn.Sequential(nn.Conv2d(2 * d + n_num, ch, 3, padding=1), act(),
                                      nn.Conv2d(ch, ch, 3, padding=1), act(), nn.Flatten())
            self.first = _ortho(nn.Linear(ch * self.cells, hidden[0]))
        self.act = act()
        layers, width_in = [], hidden[0]
        for size in hidden[1:]:
            layers += [_ortho(nn.Linear(width_in, size)), act()]
            width_in = size
        self.trunk = nn.Sequential(*layers)
        # One head for both outputs (one matmul): rows 0..4 the logits (small init, a near-uniform
        # first policy), row 5 the value.
        self.head = nn.Linear(width_in, NUM_ACTIONS + 1 if outputs is None else int(outputs))
        with torch.no_grad():
            if outputs is None:
                self.head.weight[:NUM_ACTIONS] = nn.init.orthogonal_(torch.empty(NUM_ACTIONS, width_in), 0.01)
                self.head.weight[NUM_ACTIONS:] = nn.init.orthogonal_(torch.empty(1, width_in), 1.0)
            else:
                nn.init.orthogonal_(self.head.weight, 1.0)
            self.head.bias.zero_()

    def planes(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, cells, 2d + C - 2]``: each cell's tile embedding, entity embedding, request flag,
        scaled steps left (and preference plane)."""
        o = obs.reshape(obs.shape[0], self.channels, self.cells)
        numbers = o[:, 2:].transpose(1, 2).float() * self._number_scale.view(1, 1, -1)
        return torch.cat([self.tile_embed(o[:, 0].long()), self.entity_embed(o[:, 1].long()), numbers], dim=-1)

    def first_layer(self, obs: torch.Tensor, tables=None) -> torch.Tensor:
        """The activated first hidden layer: on the CPU (embed_mlp) by the exact sparse kernel
        (:func:`first_layer_sparse`; ``tables`` = :meth:`cell_tables`, when cached), else densely."""
        if self.sparse and obs.device.type == "cpu":
            table, numbers = self.cell_tables() if tables is None else tables
            o = obs.reshape(obs.shape[0], self.channels, self.cells)
            return first_layer_sparse(o, table, numbers, self.first.bias, self.activation)
        if self.conv is None:
            return self.act(self.first(self.planes(obs).flatten(1)))
        x = self.planes(obs).transpose(1, 2).reshape(obs.shape[0], -1, self.height, self.width)
        return self.act(self.first(self.conv(x)))

    def cell_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """embed_mlp's first layer split by cell (differentiable): ``table[k, c]`` = the first
        layer's weights on cell c times the embedding of code k (tile codes, then entity codes
        from ``NUM_TILES``), ``[NUM_TILES + NUM_ENTITIES, cells, H]``; ``numbers[p, c]`` = its
        weights on cell c's number plane p (0: request flag, 1: raw steps left, 2: preference),
        ``[C - 2, cells, H]``."""
        d = self.tile_embed.embedding_dim
        n_in = 2 * d + self.channels - 2
        w = self.first.weight.view(-1, self.cells, n_in).permute(2, 1, 0)  # [2d + C - 2, cells, H]
        flat = w.reshape(n_in, -1)  # [2d + C - 2, cells * H]
        tiles = self.tile_embed.weight @ flat[:d]
        entities = self.entity_embed.weight @ flat[d:2 * d]
        table = torch.cat([tiles, entities]).view(NUM_TILES + NUM_ENTITIES, self.cells, -1)
        numbers = w[2 * d:] * self._number_scale
        return table, numbers

    def head_out(self, obs: torch.Tensor, tables=None) -> torch.Tensor:
        """``[B, 6]``: the 5 action logits and the value, in one tensor."""
        return self.head(self.trunk(self.first_layer(obs, tables)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [B, 5], value [B])``."""
        out = self.head_out(obs)
        return out[:, :NUM_ACTIONS], out[:, NUM_ACTIONS]


def _ortho(layer: nn.Linear, std: float = math.sqrt(2)) -> nn.Linear:
    """``layer`` with orthogonal weights (gain ``std``) and zero bias."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer
