"""The learner: networks, V-trace losses, the leader/follower schedule, evaluation and the gRPC service."""
