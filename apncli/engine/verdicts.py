"""The three verdicts a detector gives, torch-free so the CLI can name them without loading a model."""

AI_GENERATED = "ai-generated"
REAL = "real"
INCONCLUSIVE = "inconclusive"
