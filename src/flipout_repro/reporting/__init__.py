"""Across runs: tables beside the published numbers, figures, which sweep runs are missing, and the
report that writes them all. Reads run folders only (rundir, paths, config); never trains.
"""
