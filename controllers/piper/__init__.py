"""The piper: each digi's pool, and the egress/ingress/Pipelet pipelines between pools (spec §7).

`spec` turns digis and Pipelets into pipeline descriptions, `engine` moves one
pipeline's records exactly once and in order, `runner` schedules every
pipeline from the lake's events, and `controller` wires it into the manager.
"""

from __future__ import annotations

from controllers.piper.controller import PiperController, setup

__all__ = ["PiperController", "setup"]
