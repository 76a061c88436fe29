"""The built-in claim studies: one TOML file per claim of the seed notebook."""
