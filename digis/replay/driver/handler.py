"""Replay: a Digibox scene that feeds recorded office readings into the sensors it mounts.

`meta` picks the data: `source` (a CSV of the occupancy data set, relative to the
project root), `first_row` and `row_count` (0: to the end), and how to play it:
- `lockstep`: row i+1 is written only once row i has fully propagated, i.e. every
  mounted child's replica shows row i's data time — sensors in `obs.event_ts`,
  any other child (the room's lamps, mounted read-only) in `meta.event_ts` with
  every control status equal to its intent. A row that has not propagated within
  `timeout` seconds is written again once, then the run fails with the names of
  the children that lag. This makes a run deterministic.
- `paced`: rows are written at their recorded spacing divided by `speed`,
  without waiting.
`meta.pause: true` holds the run. Progress (`state`, `rows_applied`, `row`,
`event_ts`, `progress`) is reported in `obs`, written together with each row.
A worker restart resumes after the last applied row of the same run.

Rows are written into the replicas under `mount` (the motion sensors get
`motion_detected`, the environment sensors the four readings); the mounter
carries them down, so the scene never touches another digi directly.
"""

import hashlib
import json
import threading
import time
from pathlib import Path

import digi
import digi.on as on
import digi.util as util
from digi import dbox
from digi.demo import dataset

SENSORS = "mock.digi.dev/v1/sensors"
MOTION = "mock.digi.dev/v1/occupancies"
PROJECT = Path(__file__).resolve().parents[3]
POLL = 0.01


class Player:
    def __init__(self):
        self.thread, self.stop, self.run_id = None, threading.Event(), None

    def restart(self, meta, obs):
        run_id = run_of(meta)
        if run_id == self.run_id and self.thread and self.thread.is_alive():
            return
        self.halt()
        if meta.get("pause", False):
            if obs.get("state") not in ("done", "error"):
                digi.model.patch({"obs": {"state": "paused"}})
            return
        if obs.get("run") == run_id and obs.get("state") in ("done", "error"):
            return
        start = obs.get("rows_applied", 0) if obs.get("run") == run_id else 0
        self.run_id, self.stop = run_id, threading.Event()
        self.thread = threading.Thread(target=self.play, args=(dict(meta), run_id, start, self.stop),
                                       name="replay", daemon=True)
        self.thread.start()

    def halt(self):
        if self.thread and self.thread.is_alive():
            self.stop.set()
            self.thread.join()
        self.thread, self.run_id = None, None

    def play(self, meta, run_id, start, stop):
        try:
            readings = load(meta)
        except (OSError, dataset.DatasetError) as e:
            digi.model.patch({"obs": {"state": "error", "run": run_id, "reason": str(e)}})
            return
        if not any(digi.rc.view().get("mount", {}).get(gvr) for gvr in (SENSORS, MOTION)):
            digi.model.patch({"obs": {"state": "error", "run": run_id,
                                      "reason": f"nothing to feed: mount a sensor ({SENSORS}) or a motion "
                                                f"sensor ({MOTION}) under this replay, then unpause it"}})
            return
        total, lockstep = len(readings), meta.get("mode", "lockstep") == "lockstep"
        timeout, speed = float(meta.get("timeout") or 60), float(meta.get("speed") or 1)
        first_ts = readings[0].event_ts
        for i in range(start, total):
            reading = readings[i]
            progress = {"state": "running", "run": run_id, "rows_total": total, "first_ts": first_ts,
                        "rows_applied": i, "progress": i / total, "reason": ""}
            if lockstep:
                lagging = apply_and_wait(reading, progress, timeout, stop)
                if lagging:
                    digi.model.patch({"obs": {**progress, "state": "error",
                                              "reason": f"row {reading.row} did not propagate within "
                                                        f"{timeout:g}s to: {', '.join(lagging)}"}})
                    return
            else:
                apply(reading, progress)
                if i + 1 < total and stop.wait((readings[i + 1].event_ts - reading.event_ts) / speed):
                    return
            if stop.is_set():
                return
        last = readings[-1]
        digi.model.patch({"obs": {"state": "done", "run": run_id, "rows_total": total, "rows_applied": total,
                                  "row": last.row, "event_ts": last.event_ts, "first_ts": first_ts,
                                  "progress": 1.0, "reason": ""}})


def run_of(meta):
    keys = ("source", "first_row", "row_count", "mode", "speed")
    return hashlib.sha1(json.dumps([meta.get(k) for k in keys]).encode()).hexdigest()[:12]


def load(meta):
    source = Path(meta.get("source") or "")
    if not source.is_absolute():
        source = PROJECT / source
    return dataset.read(source, int(meta.get("first_row") or 1), int(meta.get("row_count") or 0) or None)


def apply(reading, progress):
    """Write one reading into every mounted sensor's replica, with the progress before it.

    Returns the replicas' generations before the write: the write changes a replica
    at once, so only a newer generation shows that the sensor itself has the row.
    """
    mounts = digi.rc.view().get("mount", {})
    patch = {"obs": {**progress, "row": reading.row, "event_ts": reading.event_ts}, "mount": {}}
    before = {}
    for gvr, obs in ((MOTION, reading.occupancy_obs()), (SENSORS, reading.sensor_obs())):
        for name, replica in mounts.get(gvr, {}).items():
            patch["mount"].setdefault(gvr, {})[name] = {"spec": {"obs": obs}}
            before[(gvr, name)] = replica.get("generation", 0)
    digi.model.patch(patch)
    return before


def apply_and_wait(reading, progress, timeout, stop):
    """Apply `reading` and wait until it propagated; the children still lagging, if it did not."""
    before = None
    for _attempt in range(2):
        # a rewrite changes nothing the sensors have: keep the generations from before the first write
        before = apply(reading, progress) if before is None else {**apply(reading, progress), **before}
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline:
            lagging = lagging_children(digi.rc.view().get("mount", {}), reading.event_ts, before)
            if not lagging or stop.wait(POLL):
                return []
    return lagging


def lagging_children(mounts, event_ts, before):
    """Children whose replica does not show the row yet: sensors by a newer generation carrying
    its `obs.event_ts`, others (lamps) by `meta.event_ts` and every status equal to its intent."""
    lagging = []
    for gvr, children in mounts.items():
        for name, child in children.items():
            spec = child.get("spec", {})
            if gvr in (SENSORS, MOTION):
                settled = (util.get(spec, "obs.event_ts") == event_ts
                           and child.get("generation", 0) > before.get((gvr, name), 0))
            else:
                settled = util.get(spec, "meta.event_ts") == event_ts and all(
                    c.get("status") == c.get("intent")
                    for c in spec.get("control", {}).values() if isinstance(c, dict) and "intent" in c)
            if not settled:
                lagging.append(name)
    return lagging


player = Player()


@on.mount
def do_manage(mounts):
    # only the sensors are driven; the lamps are mounted to watch them settle
    dbox.manage({gvr: mounts[gvr] for gvr in (SENSORS, MOTION) if gvr in mounts})


@on.meta
def do_play(meta, obs):
    player.restart(meta or {}, obs or {})


if __name__ == "__main__":
    digi.run()
