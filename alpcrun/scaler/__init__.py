"""``alpcrun scaler``: scale a worker Deployment to the work waiting, without a metrics adapter."""

from alpcrun.scaler.policy import Decision as Decision
from alpcrun.scaler.policy import ScaleDecider as ScaleDecider
from alpcrun.scaler.policy import ScalePolicy as ScalePolicy

__all__ = ["Decision", "ScaleDecider", "ScalePolicy"]
