"""spiderpool_agent."""

import spiderpool_common  # noqa: F401  (first: grpc's C-core verbosity before grpc loads)
