"""Synthetic in-situ TEM images, masks and videos with known truth (numpy/scipy only)."""
