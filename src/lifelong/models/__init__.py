"""Backbones and heads: plain nn.Modules with no training logic."""

from lifelong.models.backbones import MLP, LeNet, ReducedResNet18
from lifelong.models.classifier import Classifier, build_model
from lifelong.models.heads import IncrementalHead, MultiHead, SingleHead

__all__ = ["MLP", "Classifier", "IncrementalHead", "LeNet", "MultiHead", "ReducedResNet18",
           "SingleHead", "build_model"]
