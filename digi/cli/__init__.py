"""The `digi` command line: kubectl-like verbs over a dSpace."""
