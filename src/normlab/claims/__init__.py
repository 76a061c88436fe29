"""The seed notebook's claims: definitions, the measures they read from stored runs, the
verdict for each, and their built-in studies (``claims/studies/*.toml``)."""
