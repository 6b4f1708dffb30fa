"""Training one run: build its objects from the config, the loop, checkpoints, and stopping on signals.

Imports config and the leaves (data, masking, schedule, methods, models, rundir); never run, analysis
or reporting.
"""
