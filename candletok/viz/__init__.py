"""Charts a trader trusts: dates on the x axis (trading days without gaps), a volume
panel when the bars have volume, the price axis labelled with the symbol. Takes frames; draws."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = ["candles", "fan"]
