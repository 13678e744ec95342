"""Inference: drawing helpers and (later) the Predictor API."""
