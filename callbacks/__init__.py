"""Reusable Lightning callbacks."""

from callbacks.text_samples import TextSamples

__all__ = ["TextSamples"]
