"""Replay buffer, transition batches and the training data loader."""
