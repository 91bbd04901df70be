"""Reflection: layers, context assembly, the model seam, validation, storage and a layer run.

Nothing here imports litellm at module level: only `llm.ask` (through `llm.litellm_module`)
does, when a model is called.
"""
