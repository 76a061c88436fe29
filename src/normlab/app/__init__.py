"""The application layer: one call each to run a study, judge claims, fold BN, export
(``api``, ``exporting``), what the command line and a notebook both call."""
