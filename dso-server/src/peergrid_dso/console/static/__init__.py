"""The console's browser assets (ES modules, CSS), shipped as package data."""
