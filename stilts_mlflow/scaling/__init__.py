"""The diminishing-returns study: which task subsets to run (design), and what their scores say (analysis)."""
