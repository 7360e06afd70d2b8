"""videogen: video prediction, infilling and generation under one interface.

A video batch is a float tensor ``(B, T, C, H, W)`` in ``[-1, 1]``; which frames are given
is a boolean ``known`` tensor ``(B, T)``. See ``videogen.tasks`` for the known-frame patterns.
"""

__version__ = "0.1.0"
