"""Choices that `gda metrics` offers on its command line, kept outside the metrics package (whose
import loads torch) so that `gda metrics --help` starts without torch."""

EDGE_DETECTORS = ('sobel', 'hed')   # scs: the built-in Sobel detector, or HED given its weights
