"""A small real model (SmolLM2-135M-Instruct) served by a paged, DSA-style Paddle engine.

Its caches are written at the slots that the slot-mapping implementation under test computes and read back through
the block tables, so any implementation is judged by what it does to the logits and the text. Import-light: Paddle,
gguf and tokenizers are imported inside the modules that need them.
"""
