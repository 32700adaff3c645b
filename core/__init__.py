"""sopforge."""
