"""Digi's benchmark suite: `python -m bench [--quick]` (definitions in bench/README.md).

Modules: `suite` (order, failure records), `space` (the private dSpace),
`kube` (a thin REST client for the benchmark's own traffic), `floor`
(floor(k)), `propagation` (FPT/BPT, chains), `scale`, `startup`, `data`,
`probe` + `marks` (timestamps from drivers), `trials` (warm-up + trials),
`results` (statistics, results.json, the table), `machine` (what it ran on).
"""
