"""Datasets: their facts and files, IDX reading, download with checksums, preprocessing
and splits. Knows nothing of training."""
