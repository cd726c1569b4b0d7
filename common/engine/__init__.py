"""Training and evaluation engine: one loop for images and videos, jobs, launchers."""
