"""Maze (ORBIT ``maze_env_adapter``, held-out): a 6x6 / 7x6 / 7x7 / 6x7 grid maze from a randomized
depth-first generator plus a few extra openings (loops). The goal is the farthest cell from the start among
those at shortest-path distance 7 or 8. Moves: up / down / left / right. 9 turns per episode."""

from __future__ import annotations

import random
from collections import deque

from .base import SUCCESS_REWARD, InvalidAction, TextEnv, check_int

SIZES = ((6, 6), (7, 6), (7, 7), (6, 7))  # (width, height)
MOVES = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


def bfs(open_edges: set, width: int, height: int, start: tuple[int, int]) -> dict[tuple[int, int], int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        x, y = queue.popleft()
        for dx, dy in MOVES.values():
            n = (x + dx, y + dy)
            if n not in dist and frozenset(((x, y), n)) in open_edges:
                dist[n] = dist[(x, y)] + 1
                queue.append(n)
    return dist


class MazeEnv(TextEnv):
    name = "maze"
    default_max_turns = 9

    def __init__(self, max_turns: int | None = None, min_distance: int = 7, max_distance: int = 8, loops: int = 3):
        super().__init__(max_turns=max_turns)
        owner = type(self).__name__
        # the goal must be reachable in every grid size: a path between two cells of the smallest grid
        reach = min(w * h for w, h in SIZES) - 1
        self.min_distance = check_int(owner, "min_distance", min_distance, low=1, high=reach)
        self.max_distance = check_int(owner, "max_distance", max_distance, low=self.min_distance)
        self.loops = check_int(owner, "loops", loops, low=0)

    def _generate(self, rng: random.Random) -> None:
        while True:
            self.width, self.height = rng.choice(SIZES)
            w, h = self.width, self.height
            edges: set = set()
            start = (rng.randrange(w), rng.randrange(h))
            seen, stack = {start}, [start]
            while stack:  # randomized DFS spanning tree (branching corridors)
                x, y = stack[-1]
                options = [
                    (x + dx, y + dy)
                    for dx, dy in MOVES.values()
                    if 0 <= x + dx < w and 0 <= y + dy < h and (x + dx, y + dy) not in seen
                ]
                if not options:
                    stack.pop()
                    continue
                n = rng.choice(options)
                edges.add(frozenset(((x, y), n)))
                seen.add(n)
                stack.append(n)
            walls = [
                frozenset(((x, y), (x + dx, y + dy)))
                for x in range(w)
                for y in range(h)
                for dx, dy in ((1, 0), (0, 1))
                if x + dx < w and y + dy < h and frozenset(((x, y), (x + dx, y + dy))) not in edges
            ]
            for wall in rng.sample(walls, min(self.loops, len(walls))):
                edges.add(wall)
            self.start = (rng.randrange(w), rng.randrange(h))
            dist = bfs(edges, w, h, self.start)
            candidates = sorted(c for c, d in dist.items() if self.min_distance <= d <= self.max_distance)
            if candidates:
                far = max(dist[c] for c in candidates)
                self.goal = rng.choice([c for c in candidates if dist[c] == far])
                self.edges = edges
                return

    def _reset(self, rng: random.Random) -> str:
        self._generate(rng)
        self.pos = self.start
        return (
            f"You are in a {self.width}x{self.height} maze and must reach the goal within {self.max_turns} moves. "
            "Position (x, y): x grows to the right, y grows downwards.\n" + self.describe()
        )

    def cell(self, d: str) -> str:
        dx, dy = MOVES[d]
        n = (self.pos[0] + dx, self.pos[1] + dy)
        if frozenset((self.pos, n)) not in self.edges:
            return "wall"
        return "goal" if n == self.goal else "path"

    def describe(self) -> str:
        around = ", ".join(f"{d} leads to {self.cell(d)}" for d in MOVES)
        return (
            f"Now you are at position {self.pos} in the maze. Around you, {around}. "
            "Output your next move from up/down/left/right within \\boxed{}."
        )

    def _apply(self, action: str) -> tuple[str, float, bool]:
        move = action.strip().lower()
        if move not in MOVES:
            raise InvalidAction("move with up, down, left or right.")
        dx, dy = MOVES[move]
        n = (self.pos[0] + dx, self.pos[1] + dy)
        if frozenset((self.pos, n)) not in self.edges:
            return "You hit the wall. Please choose another direction. " + self.describe(), 0.0, False
        self.pos = n
        if n == self.goal:
            return "Congratulations! You arrived at the goal!", SUCCESS_REWARD, True
        return self.describe(), 0.0, False

    def shortest_path(self) -> list[str]:
        """Moves of one shortest path from the current position to the goal (oracle players)."""
        dist = bfs(self.edges, self.width, self.height, self.goal)
        path, pos = [], self.pos
        while pos != self.goal:
            for name, (dx, dy) in MOVES.items():
                n = (pos[0] + dx, pos[1] + dy)
                if frozenset((pos, n)) in self.edges and dist.get(n, 1 << 30) == dist[pos] - 1:
                    path.append(name)
                    pos = n
                    break
        return path

    def sample_random_action(self, rng: random.Random) -> str:
        return f"\\boxed{{{rng.choice(tuple(MOVES))}}}"
