"""Pattern search over a dataset folder: takes the last N candles of a query and a time T,
gives the matches whose forward windows end by T, with their outcomes next to the base rate."""
