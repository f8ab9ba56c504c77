"""The paper's experiments and our benchmarks: bench matrix/throughput/atari, ablations, studies, report."""
