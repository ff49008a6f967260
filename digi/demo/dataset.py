"""Reading the office occupancy data set (data/occupancy/*.txt) into typed rows.

The files are CSV with a header of 7 names and data rows of 8 values: the first,
unnamed column is the row id. Dates are local wall-clock time without a zone; they
are read as UTC so that a reading's `event_ts` is plain epoch seconds. Only
differences between timestamps matter to the demo, and February 2015 in Belgium had
no DST change, so this keeps every interval exact.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio", "Occupancy")


class DatasetError(ValueError):
    """The file is not the occupancy data set, or the requested slice is empty."""


@dataclass(frozen=True)
class Reading:
    row: int  # 1-based position among the data rows (equals the file's row id)
    event_ts: float  # epoch seconds of the `date` column, read as UTC
    temperature: float
    humidity: float
    light: float
    co2: float
    humidity_ratio: float
    occupied: bool

    def sensor_obs(self) -> dict[str, float]:
        """What the environment sensor observes for this reading (its `obs`)."""
        return {
            "temperature": self.temperature,
            "humidity": self.humidity,
            "light": self.light,
            "co2": self.co2,
            "humidity_ratio": self.humidity_ratio,
            "event_ts": self.event_ts,
            "row": self.row,
        }

    def occupancy_obs(self) -> dict[str, object]:
        """What the motion sensor observes for this reading (its `obs`)."""
        return {"motion_detected": self.occupied, "event_ts": self.event_ts, "row": self.row}


def parse_date(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def read(path: Path, first_row: int = 1, count: int | None = None) -> list[Reading]:
    """Rows `first_row` … `first_row + count - 1` (1-based; `count=None`: to the end)."""
    if first_row < 1:
        raise DatasetError(f"{path}: first row must be >= 1, got {first_row}")
    if count is not None and count < 1:
        raise DatasetError(f"{path}: row count must be >= 1, got {count}")
    readings: list[Reading] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise DatasetError(f"{path}: header {header} is not the occupancy data set's {list(COLUMNS)}")
        for position, record in enumerate(reader, start=1):
            if position < first_row:
                continue
            if count is not None and len(readings) == count:
                break
            readings.append(_reading(path, reader.line_num, position, record))
    if not readings:
        raise DatasetError(f"{path}: no data rows from row {first_row} (the file has fewer rows)")
    return readings


def _reading(path: Path, line: int, position: int, record: list[str]) -> Reading:
    if len(record) != len(COLUMNS) + 1:
        raise DatasetError(f"{path}:{line}: expected {len(COLUMNS) + 1} values (row id + {len(COLUMNS)}), got {len(record)}")
    _, date, temperature, humidity, light, co2, ratio, occupancy = record
    if occupancy not in ("0", "1"):
        raise DatasetError(f"{path}:{line}: Occupancy must be 0 or 1, got {occupancy!r}")
    try:
        return Reading(
            row=position,
            event_ts=parse_date(date),
            temperature=float(temperature),
            humidity=float(humidity),
            light=float(light),
            co2=float(co2),
            humidity_ratio=float(ratio),
            occupied=occupancy == "1",
        )
    except ValueError as e:
        raise DatasetError(f"{path}:{line}: {e}") from e
