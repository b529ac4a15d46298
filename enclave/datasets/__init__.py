"""Datasets and their catalog: declared schemas, immutable versions, purposes and retention."""
