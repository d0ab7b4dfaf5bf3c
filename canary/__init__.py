"""Offline assets for the harness's own tests: a tokenizer, tiny models and a trained canary model."""
