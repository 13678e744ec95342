"""Application helpers: Hydra config utilities, LR schedule, init weights, result tables, image logging."""
