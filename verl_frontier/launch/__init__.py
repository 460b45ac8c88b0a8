"""One launcher for every recipe (``frontier launch``): single node, SLURM (``sbatch``), or a Ray cluster.

See :mod:`verl_frontier.launch.core`; the job script template is ``sbatch_template.sh``; ``raynode`` starts
one Ray node with free ports, ``node_check`` checks the plugin registrations on every Ray node.
"""

from verl_frontier.launch.core import (
    LaunchOptions,
    LaunchPlan,
    check_partition,
    check_world_size,
    plan_launch,
    render_sbatch,
)

__all__ = ["LaunchOptions", "LaunchPlan", "check_partition", "check_world_size", "plan_launch", "render_sbatch"]
