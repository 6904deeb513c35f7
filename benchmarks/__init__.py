"""Side-by-side performance measurements (ratios measured in one run); see benchmarks/README.md."""
