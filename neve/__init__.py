"""neve: Neural Velocity for hyperparameter tuning (Dalmasso et al., IJCNN 2025).

Measure how fast each neuron's function still changes on a fixed auxiliary set, decay the
learning rate when that velocity stops changing, and stop training when it is near zero.
"""

from neve.aux_sets import gaussian_aux, token_aux
from neve.controller import NeVe, NeVeDecision, NeVeRule, Plateau
from neve.selection import is_default_module
from neve.velocity import VelocityMonitor, VelocityReport, VelocityTracker, select_modules

__all__ = [
    "NeVe", "NeVeDecision", "NeVeRule", "Plateau", "VelocityMonitor", "VelocityReport", "VelocityTracker",
    "gaussian_aux", "is_default_module", "select_modules", "token_aux",
]
__version__ = "0.2.0"
