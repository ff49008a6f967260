"""Worker backends: where a digi's driver runs.

`base` defines `WorkerSpec` (what a worker needs: its key, environment, driver
directory, image) and the `Backend` protocol; `local` runs a supervised
process per digi on this machine; `kubernetes` creates a Deployment per digi.
"""
