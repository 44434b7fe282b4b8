"""Model specification: the formula, its expressions, the model frame and the terms."""
