"""The client store: per-client state that exists only for clients that have been sampled."""

from dp2fl_ray.state.memory import ClientState, InMemoryClientStore

__all__ = ["ClientState", "InMemoryClientStore"]
