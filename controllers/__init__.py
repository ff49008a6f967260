"""Meta controllers hosted by the controller-manager."""
