"""Online multi-turn GRPO on trajectories read from the Redis stream.

Read top to bottom: ``config`` (every knob), ``encoding`` (trajectory → tokens and mask),
``batching`` (groups and adaptive batch filling), ``loss`` (advantages and the clipped
token-level loss), ``step`` (one optimizer step), ``checkpoint`` (what survives a crash),
``runner`` (the loop that ties them to the stream and acks after the checkpoint).
"""
