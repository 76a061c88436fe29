"""Study specs (TOML <-> pydantic), grids -> runs -> cohorts, and the study runner."""
