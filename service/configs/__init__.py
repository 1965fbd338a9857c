"""The settings groups that service.config.Settings inherits (one screenful each); read only
through Settings, never on their own."""
