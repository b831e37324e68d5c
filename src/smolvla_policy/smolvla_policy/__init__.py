"""SmolVLA model (plain PyTorch, lerobot-checkpoint compatible), the PredictChunk policy server and the
asynchronous action-queue node.
"""
