"""The ground floor: errors, atomic files, run folders and the constants every package shares.
It imports nothing else of the project; everything else may import it."""
