"""Plots drawn from stored runs; reads ``normlab.analysis``, never trains."""
