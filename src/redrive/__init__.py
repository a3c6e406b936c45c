"""redrive: force-run failed Cloud Tasks tasks safely once a fix is deployed.

Kept import-light on purpose: the deployed function imports this package on cold start, so heavy
clients (google-cloud-tasks, google-cloud-run, grpc) are imported lazily by the adapters.
"""

from redrive.names import InvalidName, QueueName, TaskName
from redrive.outcomes import Outcome

__all__ = ["InvalidName", "Outcome", "QueueName", "TaskName", "__version__"]
__version__ = "0.1.0"
