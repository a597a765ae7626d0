"""xtoken-align: build, inspect and use cross-tokenizer projection matrices (X-Token)."""

__version__ = "0.1.0"
