"""Turning prompts into tokens: the batching engine, decoding, prompting, backends."""
