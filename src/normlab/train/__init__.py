"""Training stacks of runs: the step (written once), stacked optimizers, the epoch loop
with its hooks, and the CUDA-graph replay of the step."""
