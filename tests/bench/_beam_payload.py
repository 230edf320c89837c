"""The payload of repro_beam_cogbk_loss.py, in a module of its own so that worker processes can unpickle it."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Payload:
    index: int
    array: np.ndarray
