"""The smart-office demo: real office sensor readings replayed through a dSpace.

`dataset` reads the shipped CSV, `rules` holds the documented adaptive and energy
rules (and the figures they give when applied straight to the CSV), `lakeq` the Zed
queries run through `digi query`, `promq` the latency quantiles read from the
manager's metrics, `scenario` builds and drives building `hq` → room `office-1`,
`observe` reads back what the product produced, and `summary` sets it next to the
CSV's figures. `digi.cli.demo_cmd` (`digi demo office`) runs them in that order.
"""
