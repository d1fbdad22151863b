"""dp2fl-ray: a Ray-distributed simulator of dual-prompt personalised federated learning."""

__version__ = "0.1.0"
