"""verl-frontier: new RL/distillation algorithms plugged into verl 0.9.1, with Hydra recipes.

Importing this package is cheap on purpose (the ``frontier`` CLI and verl's entry-point loader
import it); heavy modules (verl, torch, hydra) are imported where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
