"""llmblend: a reproducible workflow and library for LLM-Blender (Jiang, Ren, Lin, ACL 2023)."""

__version__ = "0.1.0"


def __getattr__(name):
    # Blender pulls in torch and transformers; import it only when asked for.
    if name == "Blender":
        from llmblend.blender import Blender

        return Blender
    raise AttributeError(name)
