"""Reusable verification: Hypothesis strategies and property checks for any latent model."""
