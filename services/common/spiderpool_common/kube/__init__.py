"""Kubernetes API access shared by the controller and the agent (plain JSON, informers)."""
