"""The Digi controller-manager."""
