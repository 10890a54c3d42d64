"""The implementations under test: Paddle models, CUDA kernels, and the seeded bugs (mutants)."""
