"""The tests' name for the simulator driver, which lives in the package
(gateway/testing/sim.py, shared with `vmn-gateway demo`), plus the SMPP statuses the
tests configure it with.

    with Simulator.start() as sim:
        sim.wait_bound()
        sim.mo(text="hello", source="15551234567", destination="5551000100")
"""

from __future__ import annotations

from gateway.testing.sim import Simulator, SimulatorError, sim_dir

SIM_DIR = sim_dir()

ESME_ROK = 0x00
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVPASWD = 0x0E
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58

__all__ = [
    "ESME_RALYBND",
    "ESME_RINVBNDSTS",
    "ESME_RINVCMDID",
    "ESME_RINVCMDLEN",
    "ESME_RINVPASWD",
    "ESME_RMSGQFUL",
    "ESME_ROK",
    "ESME_RSYSERR",
    "ESME_RTHROTTLED",
    "SIM_DIR",
    "Simulator",
    "SimulatorError",
]
