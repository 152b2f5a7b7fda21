"""The acquisition model: slice profiles, the one degradation model, training pairs, metrics."""
