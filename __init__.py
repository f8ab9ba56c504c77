"""stackrl: Stackelberg equilibria with multi-agent RL on a distributed actor-learner.

The repository root is this package (docs/design.md §2): `envs/` holds the games and the Stackelberg
layer, `actors/` the rollout processes, `learner/` the networks, losses and the gRPC service,
`protos/` the wire format, `runners/` the launchers, `experiments/` the experiments and benchmarks,
and `deploy/` the command line and the cluster files.
"""

__version__ = "0.1.0"
