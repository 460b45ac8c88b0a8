"""A deterministic pseudo-random 0/1 reward for the ACE end-to-end tests.

The small tiny world's student (20 training steps) never solves a problem, so with the real reward every
group is all-wrong: GRPO gives zero advantages, there is nothing for ACE to modulate, and DAPO's group
filter would never fill a batch. Scoring each response by the parity of its CRC32 gives mixed groups
(each group of 4 is mixed with probability 7/8) while staying a function of the response only.
"""

import zlib


def compute_score(data_source=None, solution_str="", ground_truth=None, extra_info=None, **kwargs) -> float:
    text = solution_str if isinstance(solution_str, str) else str(solution_str)
    return float(zlib.crc32(text.encode("utf-8", "replace")) % 2)
