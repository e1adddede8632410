"""Charts a trader trusts: dates on the x axis (trading days without gaps), a volume
panel when the bars have volume, the price axis labelled with the symbol. Takes frames; draws."""
