"""Configuration storage implementations (``IConfigStore``)."""
