"""Declarations, torch-free: run configurations, study files and their budgets, the
claims' settings, and the instruments by name. Everything that trains, stores or judges
reads them; they import nothing above ``models/`` and ``data/``."""
