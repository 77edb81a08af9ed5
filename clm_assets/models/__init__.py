"""Model families behind one interface: fit, predict a position in [-1, 1], bytes round trip."""
