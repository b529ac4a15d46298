"""Baselines of the dp-queries benchmark that run outside the product's environment."""
