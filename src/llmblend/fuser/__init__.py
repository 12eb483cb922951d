"""GenFuser: fuse the top-K ranked candidates into one answer (LLM-Blender's final output)."""

from llmblend.fuser.api import Fuser, load_fuser

__all__ = ["Fuser", "load_fuser"]
