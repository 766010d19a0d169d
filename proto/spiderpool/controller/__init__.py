"""Generated gRPC contracts (see the .proto files); regenerate with `make proto`."""
