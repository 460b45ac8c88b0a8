"""Blackjack with a visible deck of slots (ORBIT ``blackjack_env_adapter``).

From a 52-card deck and the seed, the dealer gets 2 cards (re-dealt until their total is >= 17; the
dealer never draws), the player 2 cards from the shuffled rest; the other 48 cards lie face down
in numbered slots. Actions: ``hit i`` (draw the card in slot ``i``) or ``stand``. The player wins iff player
<= 21, dealer <= 21 and player > dealer. The same seed gives the same deck, so slots seen in one episode
are worth remembering in the next. 4 turns per episode.

Difference from ORBIT's adapter: there ``truncated = (turn >= max_turns)``, so a winning ``stand`` on the
4th action is not a success; here a ``stand`` (or a bust) always terminates, and only a 4th action that is
a non-busting hit truncates.
"""

from __future__ import annotations

import random

from .base import SUCCESS_REWARD, InvalidAction, TextEnv

RANKS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
SUITS = ("S", "H", "D", "C")


def card_value(card: str) -> int:
    rank = card[:-1]
    if rank == "A":
        return 1
    if rank in ("J", "Q", "K"):
        return 10
    return int(rank)


def hand_total(cards: list[str]) -> int:
    """Best total: aces count 11 when that does not bust."""
    total = sum(card_value(c) for c in cards)
    if any(c[:-1] == "A" for c in cards) and total + 10 <= 21:
        total += 10
    return total


class BlackjackEnv(TextEnv):
    name = "blackjack"
    default_max_turns = 4

    def _reset(self, rng: random.Random) -> str:
        deck = [r + s for r in RANKS for s in SUITS]
        while True:  # re-deal the dealer's two cards until their total is >= 17
            i, j = rng.sample(range(len(deck)), 2)
            if hand_total([deck[i], deck[j]]) >= 17:
                break
        self.dealer = [deck[i], deck[j]]
        rest = [c for k, c in enumerate(deck) if k != i and k != j]
        rng.shuffle(rest)
        self.player = rest[:2]
        self.slots = rest[2:]
        self.used: set[int] = set()
        self._shown = [f"{k}:?" for k in range(len(self.slots))]
        return (
            "You are playing Blackjack. The dealer's hand is fixed and the dealer never draws. "
            f"Dealer: {' '.join(self.dealer)} (total {hand_total(self.dealer)}). "
            f"You: {' '.join(self.player)} (total {hand_total(self.player)}). "
            f"You win if your total is at most 21 and higher than the dealer's. The remaining {len(self.slots)} "
            "cards lie face down in numbered slots; choose which slot to draw from with \\boxed{hit i}, or "
            "\\boxed{stand}.\n" + self.render()
        )

    def render(self) -> str:
        return "Deck: " + " ".join(self._shown)

    def _apply(self, action: str) -> tuple[str, float, bool]:
        parts = action.lower().split()
        if parts == ["stand"]:
            p, d = hand_total(self.player), hand_total(self.dealer)
            win = p <= 21 and d <= 21 and p > d
            verdict = "You win!" if win else "You lose."
            return f"You stand with {p} against the dealer's {d}. {verdict}", (SUCCESS_REWARD if win else 0.0), True
        if len(parts) == 2 and parts[0] == "hit":
            try:
                i = int(parts[1])
            except ValueError:
                raise InvalidAction("use 'hit i' with a slot number, or 'stand'.") from None
            if not 0 <= i < len(self.slots):
                raise InvalidAction(f"slot {i} does not exist (0-{len(self.slots) - 1}).")
            if i in self.used:
                raise InvalidAction(f"slot {i} was already drawn.")
            self.used.add(i)
            self._shown[i] = f"{i}:{self.slots[i]}"
            self.player.append(self.slots[i])
            p = hand_total(self.player)
            if p > 21:
                return f"You drew {self.slots[i]}: total {p}. Bust, you lose.", 0.0, True
            return f"You drew {self.slots[i]}: your total is {p}.\n" + self.render(), 0.0, False
        raise InvalidAction("use 'hit i' with a slot number, or 'stand'.")

    def sample_random_action(self, rng: random.Random) -> str:
        if rng.random() < 0.3:
            return "\\boxed{stand}"
        return f"\\boxed{{hit {rng.randrange(len(self.slots))}}}"
