"""Actor processes: batched games, local CPU copies of the networks, query phase, trajectory streaming."""
