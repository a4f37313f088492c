"""Small games that pay only at the end: rlkit/TicTacToe-v0 and rlkit/Catch-v0.

They are what notes 003's "Deep Q-learning with terminal rewards" is about: every reward before
the last step is 0, so the outcome has to travel back to the moves that earned it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

WIN_LINES = np.array(
    [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]]
)
OPPONENTS = ("random", "lookahead")


def winner(board: np.ndarray) -> int:
    """+1 or -1 if that player has three in a row, else 0."""
    sums = board[WIN_LINES].sum(axis=1)
    if np.any(sums == 3):
        return 1
    if np.any(sums == -3):
        return -1
    return 0


def _render_rgb(
    cells: np.ndarray, colors: dict[int, tuple[int, int, int]], scale: int
) -> np.ndarray:
    """One colored square per cell, with a 1-pixel grid."""
    rows, cols = cells.shape
    image = np.full((rows * scale, cols * scale, 3), 255, dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            block = image[r * scale : (r + 1) * scale, c * scale : (c + 1) * scale]
            block[:] = colors.get(int(cells[r, c]), (255, 255, 255))
            block[0, :] = block[:, 0] = (200, 200, 200)
    return image


class TicTacToeEnv(gym.Env):
    """Tic-tac-toe against a built-in opponent; the agent plays X and moves first.

    Observation: the 9 cells from the agent's side, +1 own mark, -1 opponent's, 0 empty.
    Action: the cell to mark, 0-8 row by row. Reward: +1 win, -1 loss, 0 draw, 0 before the end.
    An illegal move (a taken cell) loses at once: reward -1, episode terminated,
    info["outcome"] == "illegal". info["action_mask"] marks the legal cells.
    Opponents: "random" (uniform over empty cells) or "lookahead" (wins if it can, else blocks
    an immediate win of the agent, else random).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, opponent: str = "random", render_mode: str | None = None) -> None:
        if opponent not in OPPONENTS:
            raise ValueError(f"unknown opponent {opponent!r}; choose one of {', '.join(OPPONENTS)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.opponent = opponent
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(9,), dtype=np.float32)
        self.action_space = spaces.Discrete(9)
        self.board = np.zeros(9, dtype=np.int8)

    def _obs(self) -> np.ndarray:
        return self.board.astype(np.float32)

    def _info(self, outcome: str | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"action_mask": (self.board == 0).astype(np.int8)}
        if outcome is not None:
            info["outcome"] = outcome
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.board = np.zeros(9, dtype=np.int8)
        return self._obs(), self._info()

    def _opponent_move(self) -> int:
        empty = np.flatnonzero(self.board == 0)
        if self.opponent == "lookahead":
            for mark in (-1, 1):  # first a winning move, then a block
                for cell in empty:
                    self.board[cell] = mark
                    found = winner(self.board) == mark
                    self.board[cell] = 0
                    if found:
                        return int(cell)
        return int(self.np_random.choice(empty))

    def step(self, action):
        action = int(action)
        if not 0 <= action < 9:
            raise ValueError(f"action must be in 0..8, got {action}")
        if self.board[action] != 0:
            return self._obs(), -1.0, True, False, self._info("illegal")
        self.board[action] = 1
        if winner(self.board) == 1:
            return self._obs(), 1.0, True, False, self._info("win")
        if not np.any(self.board == 0):
            return self._obs(), 0.0, True, False, self._info("draw")
        self.board[self._opponent_move()] = -1
        if winner(self.board) == -1:
            return self._obs(), -1.0, True, False, self._info("loss")
        if not np.any(self.board == 0):
            return self._obs(), 0.0, True, False, self._info("draw")
        return self._obs(), 0.0, False, False, self._info()

    def render(self):
        if self.render_mode == "ansi":
            marks = {1: "X", -1: "O", 0: "."}
            rows = [
                " ".join(marks[int(v)] for v in self.board[r * 3 : r * 3 + 3]) for r in range(3)
            ]
            return "\n".join(rows) + "\n"
        if self.render_mode == "rgb_array":
            colors = {1: (40, 90, 200), -1: (200, 60, 40), 0: (255, 255, 255)}
            return _render_rgb(self.board.reshape(3, 3), colors, scale=32)
        return None


class CatchEnv(gym.Env):
    """Catch: a ball falls from a random column of the top row, one row per step; move the
    paddle on the bottom row (0 left, 1 stay, 2 right) under it. Reward +1 for a catch, -1 for
    a miss, given only when the ball reaches the bottom; 0 on every other step.

    Observation: the rows x cols grid, flattened, 1.0 where the ball or the paddle is; with
    `pixels` (rlkit/CatchPixels-v0) the grid as a one-channel uint8 frame (rows, cols, 1), 255
    where the ball or the paddle is, for agents with a CNN.

    With `continuous` (rlkit/CatchPixelsContinuous-v0, for SAC and TD3) the action is a number
    in [-1, 1]: below -1/3 moves left, above 1/3 right, stay between.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(
        self,
        rows: int = 10,
        columns: int = 5,
        render_mode: str | None = None,
        pixels: bool = False,
        continuous: bool = False,
    ) -> None:
        if rows < 2 or columns < 2:
            raise ValueError(f"Catch needs at least 2 rows and 2 columns, got {rows}x{columns}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.rows, self.columns = rows, columns
        self.render_mode = render_mode
        self.pixels = pixels
        if pixels:
            self.observation_space = spaces.Box(0, 255, (rows, columns, 1), dtype=np.uint8)
        else:
            self.observation_space = spaces.Box(0.0, 1.0, (rows * columns,), dtype=np.float32)
        self.continuous = continuous
        if continuous:
            self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        else:
            self.action_space = spaces.Discrete(3)
        self.ball_row = self.ball_column = self.paddle = 0

    def _grid(self) -> np.ndarray:
        grid = np.zeros((self.rows, self.columns), dtype=np.float32)
        grid[self.ball_row, self.ball_column] = 1.0
        grid[self.rows - 1, self.paddle] = 1.0
        return grid

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.ball_row = 0
        self.ball_column = int(self.np_random.integers(self.columns))
        self.paddle = int(self.np_random.integers(self.columns))
        return self._observation(), {}

    def step(self, action):
        if self.continuous:
            value = float(np.asarray(action).reshape(-1)[0])
            action = 0 if value < -1 / 3 else 2 if value > 1 / 3 else 1
        action = int(action)
        if action not in (0, 1, 2):
            raise ValueError(f"action must be 0, 1 or 2, got {action}")
        self.paddle = int(np.clip(self.paddle + action - 1, 0, self.columns - 1))
        self.ball_row += 1
        if self.ball_row == self.rows - 1:
            caught = self.paddle == self.ball_column
            return (
                self._observation(),
                1.0 if caught else -1.0,
                True,
                False,
                {"outcome": "catch" if caught else "miss"},
            )
        return self._observation(), 0.0, False, False, {}

    def _observation(self) -> np.ndarray:
        if self.pixels:
            return (self._grid() * 255).astype(np.uint8)[:, :, None]
        return self._grid().reshape(-1)

    def render(self):
        grid = self._grid()
        if self.render_mode == "ansi":
            rows = []
            for r in range(self.rows):
                cells = []
                for c in range(self.columns):
                    if r == self.rows - 1 and c == self.paddle:
                        cells.append("=")
                    elif r == self.ball_row and c == self.ball_column:
                        cells.append("o")
                    else:
                        cells.append(".")
                rows.append("".join(cells))
            return "\n".join(rows) + "\n"
        if self.render_mode == "rgb_array":
            return _render_rgb(grid, {1: (30, 30, 30), 0: (255, 255, 255)}, scale=16)
        return None


def catch_frame_stack(stack_size: int = 4, **kwargs: Any) -> gym.Env:
    """rlkit/CatchPixelStack-v0: Catch's frames as 2-d (rows, cols) uint8 images in gymnasium's
    FrameStackObservation of `stack_size`, (stack_size, rows, cols): the small stand-in for
    Atari's 4-frame stack that the frame-storing replay is tested on."""
    env = CatchEnv(pixels=True, **kwargs)
    rows, columns = env.rows, env.columns
    flat = gym.wrappers.ReshapeObservation(env, (rows, columns))
    return gym.wrappers.FrameStackObservation(flat, stack_size)


def catch_dict(**kwargs: Any) -> gym.Env:
    """rlkit/CatchDict-v0: Catch seen as a Dict, {"frame": the (rows, cols, 1) uint8 frame,
    "height": how far the ball has fallen, in [0, 1]}: the small test of Dict observations
    with frames among their keys (a CNN for the frame, the vector beside it)."""
    env = CatchEnv(pixels=True, **kwargs)
    space = spaces.Dict(
        {
            "frame": env.observation_space,
            "height": spaces.Box(0.0, 1.0, (1,), dtype=np.float32),
        }
    )

    def observe(frame: np.ndarray) -> dict[str, np.ndarray]:
        height = np.array([env.ball_row / (env.rows - 1)], dtype=np.float32)
        return {"frame": frame, "height": height}

    return gym.wrappers.TransformObservation(env, observe, space)
