"""The bench library, shared by the benchmark scripts (bench/ is on sys.path when they
run as scripts; none of it imports the gateway package).

- ``measure``: percentiles, CPU time (process, threads, machine; CpuMeter), peak RSS of a
  process tree, the machine description;
- ``procs``: a target process from a command template, waiting for its bind, stopping it;
- ``load``: the load generator with wall-clock send times, phases, delivery analysis;
- ``receivers``: the webhook receiver and MQTT subscriber processes, their
  stats/dump/quit protocol (bench/sink.py speaks it too) and ``Helper`` to drive them;
- ``broker``: a Mosquitto of the bench's own;
- ``results``: the ``--json-out`` document (params, machine, time, ...);
- ``cli``: the options the benches share.

The names below are the ones every bench used from the former benchlib.py.
"""

from benchlib.measure import CLK_TCK, cpu_seconds, machine, percentile

__all__ = ["CLK_TCK", "cpu_seconds", "machine", "percentile"]
