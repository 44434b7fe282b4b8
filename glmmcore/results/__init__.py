"""Results: the fitted model, its summary, export, prediction."""
