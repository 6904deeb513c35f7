"""Serving the exported NLI model: onnxruntime + tokenizers only (no torch, no transformers)."""
