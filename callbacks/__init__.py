"""Reusable Lightning callbacks."""

from callbacks.epoch_timer import EpochTimer
from callbacks.text_samples import TextSamples
from callbacks.translation_samples import TranslationSamples

__all__ = ["EpochTimer", "TextSamples", "TranslationSamples"]
