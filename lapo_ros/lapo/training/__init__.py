"""The training run: trainer, run config, run checkpoints, metrics log, distributed context."""
