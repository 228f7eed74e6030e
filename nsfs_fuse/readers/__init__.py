"""The readers' side: what reads a mounted nsfs back (lsnsfs), and nothing of the daemon."""
