"""The training engine every trainer runs on: the loop (`loop.Engine`), checkpoints, the metrics log, the progress
bar, learning-rate schedules, EMA and processes (DDP)."""
