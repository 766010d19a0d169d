"""What the controller, the agent and the tools share.

grpcio's C core logs to stderr on its own, past the services' JSON logs, and reads its verbosity
when grpc is imported: the services keep only its errors unless the operator sets
``GRPC_VERBOSITY`` (each service package imports this one first).
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
