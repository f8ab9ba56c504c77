"""stackrl: Stackelberg equilibria with multi-agent RL on a distributed actor-learner.

The repository root is this package (DESIGN.md §2): `envs/` holds the games and the Stackelberg
layer, `actors/` the rollout processes, `learner/` the networks, losses and the gRPC service,
`protos/` the wire format and `deploy/` the command line and launchers.
"""

__version__ = "0.1.0"
