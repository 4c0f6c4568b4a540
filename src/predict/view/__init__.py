"""Views: how `predict show` and `predict report` present one problem type's predictions.

Each problem type's view is named by its spec (predict.problems); `predict.view.select.view_for`
picks it for a run.
"""
