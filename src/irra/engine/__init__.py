"""Training application: optimiser and schedule, trainer and hooks, evaluation, checkpoints."""
