"""Applications: what the scripts call (train, evaluate, demo, sweep summary) and the Hydra config helpers."""
