"""Reading dataframes and turning their rows into model-ready batches."""
