"""Reusable Lightning callbacks."""

from callbacks.classification_report import ClassificationReport
from callbacks.epoch_timer import EpochTimer
from callbacks.gradient_flow import GradientFlow
from callbacks.non_finite import StopOnNonFinite
from callbacks.progress_log import ProgressLog
from callbacks.random_state import RestoreRandomState
from callbacks.text_samples import TextSamples
from callbacks.translation_samples import TranslationSamples
from callbacks.word_neighbours import WordNeighbours

__all__ = [
    "ClassificationReport",
    "EpochTimer",
    "GradientFlow",
    "ProgressLog",
    "RestoreRandomState",
    "StopOnNonFinite",
    "TextSamples",
    "TranslationSamples",
    "WordNeighbours",
]
