"""Heads: what turns one problem type's raw model outputs into predictions, CSV columns and metrics.

Each problem type's head is named by its spec (predict.problems); `predict.heads.base.Head` says what
every head does.
"""
