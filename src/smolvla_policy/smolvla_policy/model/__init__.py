"""SmolVLA as a plain-PyTorch library (no rclpy), compatible with lerobot 0.6.1 checkpoints.

Main entry point: :class:`SmolVLAPolicy` (``from_pretrained``, ``predict_chunk``, ``save_pretrained``).
"""

from .checkpoint import CheckpointError
from .configuration import SmolVLAConfig, VLMConfig, full_size_config
from .policy import SmolVLAPolicy

__all__ = [
    "CheckpointError",
    "SmolVLAConfig",
    "SmolVLAPolicy",
    "VLMConfig",
    "full_size_config",
]
