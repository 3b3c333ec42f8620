"""Read PyTorch/npz checkpoints without torch and map them onto jaxnets variable trees."""

from jaxnets.converters.keymaps import KeyMap
from jaxnets.converters.torch_reader import load_torch_file

__all__ = ["KeyMap", "load_torch_file"]
