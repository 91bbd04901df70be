"""The read side of insights: listing, showing, searching and exporting what reflection wrote,
the layer runs and model calls behind it, and the operator's corrections."""
