"""What tests/ and bench/ share, split by what it does (each module says what)."""
