"""GPEN's networks: `FullGenerator` (encoder + StyleGAN2 decoder) and `Discriminator`."""
from model.discriminator import Discriminator
from model.generator import FullGenerator, Generator

__all__ = ["FullGenerator", "Generator", "Discriminator"]
