"""Minesweeper, reveal-only success (ORBIT ``game:Minesweeper-v0-only-reveal``): 5x5 board, 5 mines.

The mines are placed from the seed at reset, so every episode of a trial has the same board. Actions:
``reveal r c`` / ``flag r c`` (0-based row and column). Revealing a zero opens its neighbours (flood fill).
Success: every safe cell revealed (flags optional). Revealing a mine ends the episode (failure).
"""

from __future__ import annotations

import random

from .base import SUCCESS_REWARD, InvalidAction, TextEnv, check_int


class MinesweeperEnv(TextEnv):
    name = "minesweeper"
    default_max_turns = 8

    def __init__(self, max_turns: int | None = None, rows: int = 5, cols: int = 5, num_mines: int = 5):
        super().__init__(max_turns=max_turns)
        owner = type(self).__name__
        rows = self.rows = check_int(owner, "rows", rows, low=1)
        cols = self.cols = check_int(owner, "cols", cols, low=1)
        if rows * cols < 2:
            raise ValueError(f"{owner}: the board needs at least 2 cells (one mine, one safe), got {rows}x{cols}")
        self.num_mines = check_int(owner, "num_mines", num_mines, low=1, high=rows * cols - 1)
        self._neighbours = [
            [
                (rr, cc)
                for rr in range(r - 1, r + 2)
                for cc in range(c - 1, c + 2)
                if (rr, cc) != (r, c) and 0 <= rr < rows and 0 <= cc < cols
            ]
            for r in range(rows)
            for c in range(cols)
        ]

    def neighbours(self, r: int, c: int) -> list[tuple[int, int]]:
        return self._neighbours[r * self.cols + c]

    def _reset(self, rng: random.Random) -> str:
        cells = [(r, c) for r in range(self.rows) for c in range(self.cols)]
        self.mines = frozenset(rng.sample(cells, self.num_mines))
        self.counts = {
            (r, c): sum((n in self.mines) for n in self.neighbours(r, c))
            for (r, c) in cells
            if (r, c) not in self.mines
        }
        self.revealed: set[tuple[int, int]] = set()
        self.flags: set[tuple[int, int]] = set()
        return (
            f"You are playing Minesweeper on a {self.rows}x{self.cols} board with {self.num_mines} hidden mines. "
            "Reveal every safe cell to win; revealing a mine loses. Rows and columns are numbered from 0. "
            "Actions: \\boxed{reveal r c} or \\boxed{flag r c}.\n" + self.render() + "\nEnter your guess."
        )

    def render(self) -> str:
        lines = ["   " + " ".join(str(c) for c in range(self.cols))]
        for r in range(self.rows):
            row = []
            for c in range(self.cols):
                if (r, c) in self.revealed:
                    row.append(str(self.counts[(r, c)]))
                elif (r, c) in self.flags:
                    row.append("F")
                else:
                    row.append(".")
            lines.append(f"{r}  " + " ".join(row))
        return "\n".join(lines)

    def _parse(self, action: str) -> tuple[str, int, int]:
        parts = action.replace(",", " ").lower().split()
        if len(parts) != 3 or parts[0] not in ("reveal", "flag"):
            raise InvalidAction("use 'reveal r c' or 'flag r c'.")
        try:
            r, c = int(parts[1]), int(parts[2])
        except ValueError:
            raise InvalidAction("row and column must be integers.") from None
        if not (0 <= r < self.rows and 0 <= c < self.cols):
            raise InvalidAction(f"({r}, {c}) is outside the board.")
        return parts[0], r, c

    def _apply(self, action: str) -> tuple[str, float, bool]:
        kind, r, c = self._parse(action)
        cell = (r, c)
        if cell in self.revealed:
            raise InvalidAction(f"cell ({r}, {c}) is already revealed.")
        if kind == "flag":
            if cell in self.flags:
                self.flags.discard(cell)
            else:
                self.flags.add(cell)
            return self.render() + "\nEnter your guess.", 0.0, False
        if cell in self.mines:
            return f"Boom! ({r}, {c}) was a mine. You lose.", 0.0, True
        self._flood(cell)
        if len(self.revealed) == self.rows * self.cols - self.num_mines:
            return self.render() + "\nAll safe cells revealed. You win!", SUCCESS_REWARD, True
        return self.render() + "\nEnter your guess.", 0.0, False

    def _flood(self, start: tuple[int, int]) -> None:
        stack = [start]
        while stack:
            cell = stack.pop()
            if cell in self.revealed:
                continue
            self.revealed.add(cell)
            self.flags.discard(cell)
            if self.counts[cell] == 0:
                stack.extend(n for n in self.neighbours(*cell) if n not in self.revealed and n not in self.mines)

    def sample_random_action(self, rng: random.Random) -> str:
        return f"\\boxed{{reveal {rng.randrange(self.rows)} {rng.randrange(self.cols)}}}"
