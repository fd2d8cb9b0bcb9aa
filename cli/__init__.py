"""Command-line entry point: the composition root that may import every part of dislotrack."""
