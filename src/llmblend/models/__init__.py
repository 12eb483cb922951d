"""Model specs, resolution to local directories, and loading (see resolve.py)."""
