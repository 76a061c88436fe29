"""Runs and studies: run configs, study files, planning into stacks, executors, the
seed's procedures, and ``api`` (``run_study``, ``judge_claims``): what the command
line, a notebook or a worker call."""
