"""The smart-office demo: real office sensor readings replayed through a dSpace.

`dataset` reads the shipped CSV, `rules` holds the documented adaptive and energy
rules (and the figures they give when applied straight to the CSV), `lakeq` the Zed
queries the summary runs through `digi query`, `promq` the latency quantiles read
from the manager's metrics, `scenario` builds and drives building `hq` → room
`office-1`, and `summary` turns what the product produced into the printed report.
"""
