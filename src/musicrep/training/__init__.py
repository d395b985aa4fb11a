"""Training: config loading, objectives, the torch dataset and loaders, checkpoints, the run log, early stopping, the save policy, distributed plumbing and the Trainer."""
