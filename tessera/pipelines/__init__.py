"""Pipelines: lists of stages run in one folder (the demo, one model that sees and draws, the ablations)."""
