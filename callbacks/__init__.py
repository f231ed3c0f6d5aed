"""Reusable Lightning callbacks."""

from callbacks.epoch_timer import EpochTimer
from callbacks.text_samples import TextSamples

__all__ = ["EpochTimer", "TextSamples"]
